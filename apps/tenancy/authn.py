"""API key → tenant resolution with a short in-process cache, so the hot path skips the database.

Revocation clears this process's entry at once; other processes see it within the TTL
(``SOTTO_API_KEY_CACHE_TTL_S``, 5 s by default). ``last_used_at`` is written at most once per
``SOTTO_API_KEY_LAST_USED_EVERY_S`` per key, never on every request.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.utils import timezone

from apps.core.audit import key_actor
from apps.core.conf import sotto
from apps.core.tenant_db import api_key_lookup, tenant_context
from apps.tenancy import keys
from apps.tenancy.models import ApiKey, Tenant


@dataclass(frozen=True)
class KeyPrincipal:
    key_id: int
    prefix: str
    tenant_id: int
    tenant_slug: str
    scopes: frozenset[str]
    rate_limit_per_s: float | None

    @property
    def actor(self) -> str:
        return key_actor(self.prefix)


class KeyRejected(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_cache: dict[str, tuple[float, str, KeyPrincipal]] = {}
_last_used: dict[int, float] = {}
_lock = threading.Lock()


def forget_cached_key(prefix: str) -> None:
    with _lock:
        _cache.pop(prefix, None)


def authenticate_key(raw: str) -> KeyPrincipal:
    parsed = keys.parse(raw)
    if parsed is None:
        raise KeyRejected("malformed API key: expected 'Authorization: Bearer sotto_<prefix>_<secret>'")
    now = time.monotonic()
    ttl = sotto().api_key_cache_ttl_s
    with _lock:
        hit = _cache.get(parsed.prefix)
    if hit and hit[0] > now and keys.matches(raw, hit[1]):
        principal = hit[2]
    else:
        principal, stored_hash = _load(parsed.prefix, raw)
        if ttl > 0:
            with _lock:
                _cache[parsed.prefix] = (now + ttl, stored_hash, principal)
    _touch(principal, now)
    return principal


def _load(prefix: str, raw: str) -> tuple[KeyPrincipal, str]:
    with api_key_lookup(prefix):
        key = ApiKey.objects.filter(prefix=prefix).select_related("tenant").first()
        if key is None or not keys.matches(raw, key.key_hash):
            raise KeyRejected("invalid API key")
        if key.revoked_at is not None:
            raise KeyRejected("this API key has been revoked")
        if key.tenant.status != Tenant.Status.ACTIVE:
            raise KeyRejected("this tenant is suspended")
        principal = KeyPrincipal(
            key_id=key.id,
            prefix=key.prefix,
            tenant_id=key.tenant_id,
            tenant_slug=key.tenant.slug,
            scopes=frozenset(key.scopes),
            rate_limit_per_s=key.rate_limit_per_s,
        )
        return principal, key.key_hash


def _touch(principal: KeyPrincipal, now: float) -> None:
    every = sotto().api_key_last_used_every_s
    with _lock:
        if now - _last_used.get(principal.key_id, -1e18) < every:
            return
        _last_used[principal.key_id] = now
    with tenant_context(principal.tenant_id):
        ApiKey.objects.filter(pk=principal.key_id).update(last_used_at=timezone.now())
