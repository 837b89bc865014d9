"""Tenant lifecycle hooks: apps that keep per-tenant storage register here instead of being imported."""

from __future__ import annotations

from collections.abc import Callable

_created: list[Callable[[int], None]] = []


def on_tenant_created(func: Callable[[int], None]) -> Callable[[int], None]:
    """Register ``func(tenant_id)``; it runs inside the tenant-creating transaction."""
    _created.append(func)
    return func


def run_tenant_created(tenant_id: int) -> None:
    for func in _created:
        func(tenant_id)


_vectors_ready: list[Callable[[int, list[int]], None]] = []


def on_item_vectors_ready(func: Callable[[int, list[int]], None]) -> Callable[[int, list[int]], None]:
    """Register ``func(tenant_id, item_pks)``: called when those items' content vectors became ready.

    It runs inside the transaction (scoped to the tenant) that writes the vectors, so whatever it
    folds in commits or rolls back with them; it must be idempotent (a batch may be retried).
    """
    _vectors_ready.append(func)
    return func


def run_item_vectors_ready(tenant_id: int, item_pks: list[int]) -> None:
    for func in _vectors_ready:
        func(tenant_id, item_pks)


_layout_changed: list[Callable[[int], int]] = []


def on_feature_layout_changed(func: Callable[[int], int]) -> Callable[[int], int]:
    """Register ``func(tenant_id) -> states rebuilt``: the tenant's newly active model reads user states
    with another feature layout than the version it replaced (a deploy changed the layout).

    It runs after the switch committed, outside any transaction; it opens its own (one short one per
    user, so it never holds many locks for long).
    """
    _layout_changed.append(func)
    return func


def run_feature_layout_changed(tenant_id: int) -> int:
    """Every registered handler, in order; the number of user states they rebuilt."""
    return sum(func(tenant_id) for func in _layout_changed)
