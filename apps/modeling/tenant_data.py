"""The training data of a tenant, read from the profiles and catalogue tables in bulk.

Why raw SQL on other apps' tables: training needs every event of the tenant at once (tens of
thousands of rows into numpy), which no per-user selector of ``apps.profiles`` offers; the
columns read here (``profiles_userevent``: user_id, item_id, value, ts; ``catalog_itemvector``:
item_id, embedding) are the stable core of those apps' schemas. Reads only, in the caller's
tenant-scoped transaction (RLS applies) and filtered on ``tenant_id``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db import connection

from apps.catalog.vectors import parse_vector


@dataclass(frozen=True)
class TenantData:
    """Items with content vectors (ascending pk) and the events on them."""

    item_pks: np.ndarray  # int64 (n_items,) ascending
    content: np.ndarray  # float32 (n_items, 384), row i = item_pks[i]
    user: np.ndarray  # int64 (n,) EndUser pk
    item: np.ndarray  # int64 (n,) item pk
    value: np.ndarray  # float32 (n,)
    ts: np.ndarray  # float64 (n,) seconds since the epoch

    @property
    def n_users(self) -> int:
        return len(np.unique(self.user))


_USERS = """
SELECT count(DISTINCT e.user_id) FROM profiles_userevent e
JOIN catalog_itemvector v ON v.tenant_id = e.tenant_id AND v.item_id = e.item_id
WHERE e.tenant_id = %s AND v.tenant_id = %s
"""


def trainable_users(tenant_id: int) -> int:
    """Users with at least one event on an item that has a content vector (the DP unit)."""
    with connection.cursor() as cursor:
        cursor.execute(_USERS, [int(tenant_id), int(tenant_id)])
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def event_users(tenant_id: int) -> int:
    """Users with at least one event, on any item (the unit of a popularity release)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(DISTINCT user_id) FROM profiles_userevent WHERE tenant_id = %s", [int(tenant_id)]
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def items(tenant_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(item pks ascending, their content vectors) of every item with a content vector."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT item_id, embedding::text FROM catalog_itemvector WHERE tenant_id = %s ORDER BY item_id",
            [int(tenant_id)],
        )
        rows = cursor.fetchall()
    item_pks = np.array([int(r[0]) for r in rows], dtype=np.int64)
    content = (
        np.stack([parse_vector(r[1]) for r in rows]).astype(np.float32)
        if rows
        else np.zeros((0, 384), dtype=np.float32)
    )
    return item_pks, content


def load(tenant_id: int) -> TenantData:
    """Snapshot of the tenant's trainable data (call inside one transaction for consistency)."""
    item_pks, content = items(tenant_id)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT e.user_id, e.item_id, e.value, extract(epoch FROM e.ts)::float8
            FROM profiles_userevent e
            JOIN catalog_itemvector v ON v.tenant_id = e.tenant_id AND v.item_id = e.item_id
            WHERE e.tenant_id = %s AND v.tenant_id = %s
            ORDER BY e.id
            """,
            [int(tenant_id), int(tenant_id)],
        )
        events = cursor.fetchall()
    arr = np.array(events, dtype=np.float64).reshape(-1, 4)
    return TenantData(
        item_pks=item_pks,
        content=content,
        user=arr[:, 0].astype(np.int64),
        item=arr[:, 1].astype(np.int64),
        value=arr[:, 2].astype(np.float32),
        ts=arr[:, 3],
    )


def event_pairs(tenant_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item) pk pairs of every event (any item, vector or not) and the item universe."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT user_id, item_id FROM profiles_userevent WHERE tenant_id = %s", [int(tenant_id)]
        )
        pairs = np.array(cursor.fetchall(), dtype=np.int64).reshape(-1, 2)
        cursor.execute("SELECT id FROM catalog_item WHERE tenant_id = %s ORDER BY id", [int(tenant_id)])
        items = np.array([int(r[0]) for r in cursor.fetchall()], dtype=np.int64)
    return pairs[:, 0], pairs[:, 1], items
