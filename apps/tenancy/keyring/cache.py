"""Unwrapped tenant keys cached in this process (the pseudonym key for its life, ``enc`` keys for a TTL)."""

from __future__ import annotations

import threading
import time

from apps.core.conf import sotto
from apps.tenancy.keyring.primitives import PSEUDONYM

_cache_lock = threading.Lock()
_cache: dict[tuple[int, str, int], tuple[float, bytes]] = {}


def _cache_get(tenant_id: int, purpose: str, version: int) -> bytes | None:
    with _cache_lock:
        hit = _cache.get((tenant_id, purpose, version))
    if hit is None or hit[0] < time.monotonic():
        return None
    return hit[1]


def _cache_put(tenant_id: int, purpose: str, version: int, key: bytes) -> None:
    # The pseudonym key never changes, so it may live as long as the process.
    ttl = float("inf") if purpose == PSEUDONYM else sotto().key_cache_ttl_s
    if ttl > 0:
        with _cache_lock:
            _cache[(tenant_id, purpose, version)] = (time.monotonic() + ttl, key)
