"""Per-API-key rate limits, so one tenant's flood cannot take the capacity another tenant relies on.

A token bucket per key: ``rate`` tokens a second, holding at most ``rate * SOTTO_RATE_LIMIT_BURST_S``
(at least 1). An empty bucket answers 429 with ``Retry-After`` (whole seconds, rounded up).

The rate, most specific first: ``ApiKey.rate_limit_per_s``; the tenant's
``Tenant.settings["rate_limit_per_s"]`` (read at most once per ``SOTTO_RATE_LIMIT_TENANT_TTL_S``
per tenant per process); ``SOTTO_RATE_LIMIT_PER_S``. A value that is not a positive number is
ignored; ``SOTTO_RATE_LIMIT_PER_S=0`` with nothing more specific means no limit.

Where the buckets live:
- by default **in each process**: no network hop on the hot path, but with N web processes a key
  can get up to N times its rate (each process refills its own bucket);
- with ``SOTTO_RATE_LIMIT_REDIS_URL`` set, **in Redis**, shared by every process: one round trip
  per request (a Lua script, using Redis's own clock). If Redis cannot be reached the request
  falls back to the local bucket (fail open to the per-process limit, never to "no limit").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from apps.core.conf import sotto
from apps.tenancy.authn import KeyPrincipal

logger = logging.getLogger(__name__)

# Injected in tests (time without sleeping).
clock: Callable[[], float] = time.monotonic


class LocalBuckets:
    """Token buckets in this process's memory, keyed by API key id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[int, tuple[float, float]] = {}  # key id -> (tokens, at)

    def take(self, key_id: int, rate: float, capacity: float, now: float) -> tuple[bool, float]:
        """Take one token; returns (allowed, seconds until one is available)."""
        with self._lock:
            tokens, at = self._buckets.get(key_id, (capacity, now))
            tokens = min(capacity, tokens + max(0.0, now - at) * rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return True, 0.0
            self._buckets[key_id] = (tokens, now)
            return False, (1.0 - tokens) / rate

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()


_LUA = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 1)
return {allowed, tostring(wait)}
"""


class RedisBuckets:
    """Token buckets shared by every process through one Redis (atomic Lua script)."""

    def __init__(self, url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        self._script: Any = self._client.register_script(_LUA)

    def take(self, key_id: int, rate: float, capacity: float, now: float) -> tuple[bool, float]:
        allowed, wait = self._script(
            keys=[f"sotto:ratelimit:key:{key_id}"], args=[repr(rate), repr(capacity)]
        )
        return bool(int(allowed)), float(wait)


_local = LocalBuckets()
_shared: RedisBuckets | None = None
_shared_url: str | None = None
_shared_lock = threading.Lock()
_last_redis_warning = 0.0


def _shared_buckets() -> RedisBuckets | None:
    global _shared, _shared_url
    url = sotto().rate_limit_redis_url
    if not url:
        return None
    if _shared is None or _shared_url != url:
        with _shared_lock:
            if _shared is None or _shared_url != url:
                _shared, _shared_url = RedisBuckets(str(url)), str(url)
    return _shared


def take_token(key_id: int, rate: float) -> tuple[bool, float]:
    global _last_redis_warning
    capacity = max(1.0, rate * sotto().rate_limit_burst_s)
    now = clock()
    shared = _shared_buckets()
    if shared is not None:
        try:
            return shared.take(key_id, rate, capacity, now)
        except Exception as exc:  # Redis down or slow: fall back to this process's bucket
            if now - _last_redis_warning > 60.0:
                _last_redis_warning = now
                logger.warning(
                    "rate limit: Redis unavailable (%s); using per-process buckets", type(exc).__name__
                )
    return _local.take(key_id, rate, capacity, now)


# --- which rate applies ------------------------------------------------------------------------

_tenant_rates: dict[int, tuple[float, float | None]] = {}  # tenant id -> (expires, rate)
_tenant_lock = threading.Lock()


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def tenant_rate(tenant_id: int) -> float | None:
    now = clock()
    with _tenant_lock:
        hit = _tenant_rates.get(tenant_id)
    if hit is not None and hit[0] > now:
        return hit[1]
    from apps.tenancy.models import Tenant

    settings = Tenant.objects.filter(pk=tenant_id).values_list("settings", flat=True).first() or {}
    rate = _positive(settings.get("rate_limit_per_s")) if isinstance(settings, dict) else None
    ttl = sotto().rate_limit_tenant_ttl_s
    with _tenant_lock:
        _tenant_rates[tenant_id] = (now + ttl, rate)
    return rate


def forget_tenant_rates() -> None:
    """Drop cached tenant rates (tests; an operator changing a limit waits at most the TTL)."""
    with _tenant_lock:
        _tenant_rates.clear()


def rate_for(principal: KeyPrincipal) -> float | None:
    """Requests a second this key may make, or None for no limit."""
    return (
        _positive(principal.rate_limit_per_s)
        or tenant_rate(principal.tenant_id)
        or _positive(sotto().rate_limit_per_s)
    )


class ApiKeyRateThrottle(BaseThrottle):
    """DRF throttle (``DEFAULT_THROTTLE_CLASSES``): runs after authentication and the scope check."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        principal = request.auth
        if not isinstance(principal, KeyPrincipal):
            return True
        rate = rate_for(principal)
        if rate is None:
            return True
        allowed, wait = take_token(principal.key_id, rate)
        self._wait = None if allowed else wait
        return allowed

    def wait(self) -> float | None:
        return self._wait
