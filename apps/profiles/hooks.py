"""Profiles' side of the catalogue and of modeling: fold pending events in when their items' vectors
arrive; rebuild user states when a newly active model reads them with another feature layout."""

from __future__ import annotations

from apps.core.hooks import on_feature_layout_changed, on_item_vectors_ready


def _fold_pending(tenant_id: int, item_pks: list[int]) -> None:
    from apps.profiles.services import events_fold_pending

    events_fold_pending(tenant_id=tenant_id, item_pks=item_pks)


def _rebuild_states(tenant_id: int) -> int:
    from apps.profiles.services import user_states_rebuild_all

    return user_states_rebuild_all(tenant_id)


def register() -> None:
    on_item_vectors_ready(_fold_pending)
    on_feature_layout_changed(_rebuild_states)
