"""Serving actions that leave a trace: a person looking at one end user's recommendations.

The API's ``/api/v1/recommendations`` is a client application serving its own users, on the hot
path, and is not audited per request. A *person* (a tenant admin in the web admin) asking what
one identified end user is being recommended is a look at that user's behaviour, so it follows
the rule of the access export (``profiles.services.user_export``): it is recorded in the tenant's
audit chain, under the person's name, with the pseudonym as target (never the client's id), in the
same transaction as the read.
"""

from __future__ import annotations

from apps.core import audit
from apps.core.audit import AuditAction
from apps.core.tenant_db import tenant_context
from apps.serving import params
from apps.serving.selectors import Ranked, recommendations_for_user
from apps.tenancy.pseudonyms import pseudonymise

PREVIEW_K = 10


def recommendations_preview(*, tenant_id: int, user_ref: str, actor: str, k: int = PREVIEW_K) -> Ranked:
    """What ``GET /api/v1/recommendations?user=<user_ref>&k=<k>`` answers now (the API's defaults:
    seen items excluded, no category, no diversity), through the same selector, audited as
    ``end_user.recommendations.view``. ``DomainError`` for an id the API would refuse."""
    user = params.parse_user(user_ref, required=True)
    assert user is not None
    k = params.parse_k(str(k))
    with tenant_context(tenant_id):
        ranked = recommendations_for_user(tenant_id=tenant_id, user_ref=user, k=k)
        audit.record(
            tenant_id=tenant_id,
            actor=actor,
            action=AuditAction.END_USER_RECOMMENDATIONS_VIEW,
            target_type="end_user",
            target_id=pseudonymise(tenant_id=tenant_id, user_ref=user).hex(),
            details={
                "k": k,
                "strategy": ranked.strategy,
                "model_version": ranked.model_version,
                "items": len(ranked.items),
            },
        )
    return ranked
