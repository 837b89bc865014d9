"""Helpers for modeling tests: a small tenant with items, content vectors and events, no worker needed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from tests.support import TenantPersona


def seed_catalog(
    tenant_id: int, n_items: int = 30, n_clusters: int = 3, seed: int = 0, dim: int = 384
) -> list[int]:
    """Items ``i0..`` in ``n_clusters`` categories with clustered unit content vectors; returns item pks."""
    from apps.catalog.models import EncodingStatus, Item
    from apps.catalog.vectors import VectorRow, vectors_write
    from apps.core.tenant_db import tenant_context

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    with tenant_context(tenant_id):
        items = Item.objects.bulk_create(
            [
                Item(
                    tenant_id=tenant_id,
                    external_id=f"i{n}",
                    title=f"item {n}",
                    categories=[f"c{n % n_clusters}"],
                    content_hash=f"{n:064d}",
                    encoding_status=EncodingStatus.READY,
                    encoded_hash=f"{n:064d}",
                )
                for n in range(n_items)
            ]
        )
        rows = []
        for n, item in enumerate(items):
            v = centres[n % n_clusters] + 0.8 * rng.normal(size=dim)
            v /= np.linalg.norm(v)
            rows.append(
                VectorRow(
                    item_pk=item.pk,
                    external_id=item.external_id,
                    vector=v.astype(np.float32),
                    available=True,
                    categories=item.categories,
                    model="test",
                    content_hash=item.content_hash,
                )
            )
        vectors_write(tenant_id=tenant_id, rows=rows)
    return [item.pk for item in items]


def seed_events(
    tenant_id: int,
    n_users: int = 40,
    n_items: int = 30,
    n_clusters: int = 3,
    per_user: int = 8,
    seed: int = 0,
) -> None:
    """User ``u<k>`` interacts only with items of cluster ``k % n_clusters`` (planted structure)."""
    from apps.profiles.services import events_ingest
    from apps.profiles.validation import EventIn

    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    events: list[EventIn] = []
    for u in range(n_users):
        cluster = [i for i in range(n_items) if i % n_clusters == u % n_clusters]
        chosen = rng.choice(cluster, size=min(per_user, len(cluster)), replace=False)
        for j, item in enumerate(chosen):
            events.append(
                EventIn(
                    index=len(events),
                    event_id=f"e{u}-{j}",
                    user=f"u{u}",
                    item=f"i{item}",
                    type="rating",
                    value=float(rng.integers(3, 6)),
                    ts=start + timedelta(hours=u, minutes=j),
                )
            )
    events_ingest(tenant_id=tenant_id, events=events)


def seed_tenant(persona: TenantPersona, **kw: Any) -> list[int]:
    pks = seed_catalog(persona.tenant.id, n_items=kw.get("n_items", 30))
    seed_events(persona.tenant.id, n_users=kw.get("n_users", 40), n_items=kw.get("n_items", 30))
    return pks


def set_modeling(persona: TenantPersona, dp_design: str | None = None, **modeling: Any) -> None:
    from apps.tenancy.models import Tenant

    tenant = Tenant.objects.get(pk=persona.tenant.id)
    tenant.settings = {**tenant.settings, "modeling": {**tenant.settings.get("modeling", {}), **modeling}}
    if dp_design is not None:
        tenant.settings["dp_design"] = dp_design
    tenant.save(update_fields=["settings"])


def active_model(tenant_id: int) -> Any:
    """The tenant's serving model, which the test expects to exist."""
    from apps.modeling.selectors import serving_model

    model = serving_model(tenant_id)
    assert model is not None, f"tenant {tenant_id} has no active model"
    return model
