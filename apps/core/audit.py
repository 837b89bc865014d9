"""The one door every sensitive action goes through to reach the audit chain.

Callers pass what happened; the audit app (when installed) appends it to the tenant's hash
chain inside the caller's transaction, so the action and its record commit or fail together.
"""

from __future__ import annotations

import importlib.util
from typing import Any


def record(
    *,
    tenant_id: int | None,
    actor: str,
    action: str,
    target_type: str = "",
    target_id: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    if importlib.util.find_spec("apps.audit.services") is None:
        return
    from apps.audit.services import audit_append

    audit_append(
        tenant_id=tenant_id,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=details or {},
    )
