"""Profiles' side of the catalogue: fold pending events in when their items' vectors arrive."""

from __future__ import annotations

from apps.core.hooks import on_item_vectors_ready


def _fold_pending(tenant_id: int, item_pks: list[int]) -> None:
    from apps.profiles.services import events_fold_pending

    events_fold_pending(tenant_id=tenant_id, item_pks=item_pks)


def register() -> None:
    on_item_vectors_ready(_fold_pending)
