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
