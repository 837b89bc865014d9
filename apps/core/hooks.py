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
