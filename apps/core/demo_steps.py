"""The demo's data steps, filled in as each app lands (catalogue import, encoding, training, evaluation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apps.tenancy.models import Tenant


def run_extra_steps(*, tenant: Tenant, step: Callable[[str], None], stdout: Any) -> None:
    """Load data and train; each app contributes its step here in order."""


def curl_examples(*, base: str, key: str) -> list[str]:
    return []
