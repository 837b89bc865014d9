"""Reads the serving layer uses: a user's real-time state and the items they have interacted with.

Each takes the client's user id and pseudonymises it internally. They join the caller's
transaction when it is scoped to that tenant (as every ``TenantAPIView`` request is), else open a
tenant-scoped one; each is one query. An unknown (or erased) user reads as ``None`` / empty: a
cold start, indistinguishable from a user who never existed.
"""

from __future__ import annotations

from typing import Any

from django.db import connection

from apps.core.tenant_db import tenant_scope
from apps.modeling.ml.features import feature_config  # re-exported: where it used to live
from apps.profiles.services import load_state
from apps.tenancy.pseudonyms import pseudonymise

__all__ = ["feature_config", "seen_item_pks", "user_pseudonym_id", "user_state", "user_state_and_seen"]

_STATE = """
SELECT s.data FROM profiles_enduser u JOIN profiles_userstate s ON s.user_id = u.id
WHERE u.tenant_id = %s AND u.pseudonym = %s
"""

_SEEN = """
SELECT DISTINCT e.item_id FROM profiles_enduser u JOIN profiles_userevent e ON e.user_id = u.id
WHERE u.tenant_id = %s AND u.pseudonym = %s AND e.tenant_id = %s
"""

_BOTH = """
SELECT s.data, ARRAY(SELECT DISTINCT e.item_id FROM profiles_userevent e WHERE e.user_id = u.id)
FROM profiles_enduser u JOIN profiles_userstate s ON s.user_id = u.id
WHERE u.tenant_id = %s AND u.pseudonym = %s
"""


def user_state(tenant_id: int, user_ref: str) -> dict[str, Any] | None:
    """The user's state in ``apps.modeling.ml.features`` format (built with :func:`feature_config`).

    None when the user is unknown or has no folded event yet (cold start).
    """
    with tenant_scope(tenant_id):
        pseudonym = pseudonymise(tenant_id=tenant_id, user_ref=user_ref)
        with connection.cursor() as cursor:
            cursor.execute(_STATE, [tenant_id, pseudonym])
            row = cursor.fetchone()
    state = load_state(None if row is None or row[0] is None else bytes(row[0]))
    return state if state is not None and state["n_events"] > 0 else None


def seen_item_pks(tenant_id: int, user_ref: str) -> set[int]:
    """Catalogue pks of every item the user has an event for (folded or pending)."""
    with tenant_scope(tenant_id):
        pseudonym = pseudonymise(tenant_id=tenant_id, user_ref=user_ref)
        with connection.cursor() as cursor:
            cursor.execute(_SEEN, [tenant_id, pseudonym, tenant_id])
            return {int(row[0]) for row in cursor.fetchall()}


def user_state_and_seen(tenant_id: int, user_ref: str) -> tuple[dict[str, Any] | None, set[int]]:
    """:func:`user_state` and :func:`seen_item_pks` in one round trip."""
    with tenant_scope(tenant_id):
        pseudonym = pseudonymise(tenant_id=tenant_id, user_ref=user_ref)
        with connection.cursor() as cursor:
            cursor.execute(_BOTH, [tenant_id, pseudonym])
            row = cursor.fetchone()
    if row is None:
        return None, set()
    state = load_state(None if row[0] is None else bytes(row[0]))
    seen = {int(pk) for pk in row[1] or []}
    return (state if state is not None and state["n_events"] > 0 else None), seen


def user_pseudonym_id(tenant_id: int, user_ref: str) -> int | None:
    """The ``EndUser`` pk behind a client user id (for :func:`~apps.profiles.services.user_state_rebuild`)."""
    with tenant_scope(tenant_id):
        pseudonym = pseudonymise(tenant_id=tenant_id, user_ref=user_ref)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM profiles_enduser WHERE tenant_id = %s AND pseudonym = %s",
                [tenant_id, pseudonym],
            )
            row = cursor.fetchone()
    return None if row is None else int(row[0])
