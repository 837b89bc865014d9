"""Modeling's side of the catalogue: items whose content vector arrives get served vectors too."""

from __future__ import annotations

from apps.core.hooks import on_item_vectors_ready


def _materialise_new_items(tenant_id: int, item_pks: list[int]) -> None:
    from apps.modeling.served import served_vectors_refresh_items

    served_vectors_refresh_items(tenant_id=tenant_id, item_pks=item_pks)


def register() -> None:
    on_item_vectors_ready(_materialise_new_items)
