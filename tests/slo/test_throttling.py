"""Per-key token buckets: 429 with Retry-After, rates per key / tenant / default, one tenant's
flood leaves another's key alone, and an optional Redis bucket shared by every process."""

from __future__ import annotations

import subprocess
import time

import pytest

from apps.api import throttling
from apps.core.tenant_db import tenant_context
from apps.tenancy.models import ApiKey
from apps.tenancy.services import api_key_create, tenant_update_settings
from tests.support import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(throttling, "clock", fake)
    throttling._local.clear()
    throttling.forget_tenant_rates()
    yield fake
    throttling._local.clear()
    throttling.forget_tenant_rates()


def set_key_rate(persona, rate):
    with tenant_context(persona.tenant.id):
        ApiKey.objects.filter(tenant=persona.tenant).update(rate_limit_per_s=rate)


def statuses(api, persona, n, path="/api/v1/tenant"):
    return [api.get(path, **persona.auth).status_code for _ in range(n)]


def test_a_key_over_its_rate_gets_429_with_retry_after_and_recovers_as_tokens_refill(api, tenant_a, clock):
    set_key_rate(tenant_a, 2.0)  # burst 2 s -> the bucket holds 4
    assert statuses(api, tenant_a, 4) == [200] * 4
    refused = api.get("/api/v1/tenant", **tenant_a.auth)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "rate_limited"
    clock.now += 0.5  # one token back
    assert statuses(api, tenant_a, 2) == [200, 429]


def test_retry_after_rounds_the_wait_up_to_whole_seconds(api, tenant_a, clock):
    set_key_rate(tenant_a, 0.2)  # one token every 5 s, bucket holds 1
    assert statuses(api, tenant_a, 2) == [200, 429]
    assert api.get("/api/v1/tenant", **tenant_a.auth)["Retry-After"] == "5"


def test_the_tenant_setting_applies_to_its_keys_without_their_own_rate(api, tenant_a, clock):
    tenant_update_settings(tenant=tenant_a.tenant, changes={"rate_limit_per_s": 1.0}, actor="test")
    throttling.forget_tenant_rates()
    assert statuses(api, tenant_a, 3) == [200, 200, 429]


def test_a_key_s_own_rate_beats_the_tenant_s(api, tenant_a, clock):
    tenant_update_settings(tenant=tenant_a.tenant, changes={"rate_limit_per_s": 1.0}, actor="test")
    throttling.forget_tenant_rates()
    set_key_rate(tenant_a, 3.0)
    assert statuses(api, tenant_a, 7) == [200] * 6 + [429]


def test_the_default_applies_when_nothing_more_specific_is_set(api, tenant_a, clock, settings):
    settings.SOTTO = {**settings.SOTTO, "RATE_LIMIT_PER_S": 1.5}  # bucket holds 3
    assert statuses(api, tenant_a, 4) == [200, 200, 200, 429]


def test_a_zero_default_means_no_limit(api, tenant_a, clock, settings):
    settings.SOTTO = {**settings.SOTTO, "RATE_LIMIT_PER_S": 0}
    assert statuses(api, tenant_a, 30) == [200] * 30


def test_one_tenant_flooding_leaves_another_tenant_s_key_untouched(api, tenant_a, tenant_b, clock):
    set_key_rate(tenant_a, 1.0)
    set_key_rate(tenant_b, 1.0)
    flood = statuses(api, tenant_a, 20)
    assert flood.count(429) == 18
    assert statuses(api, tenant_b, 2) == [200, 200]


def test_two_keys_of_one_tenant_have_separate_buckets(api, tenant_a, clock):
    other = api_key_create(tenant=tenant_a.tenant, name="second", scopes=["serve"])
    set_key_rate(tenant_a, 0.5)  # both keys: bucket of 1
    second = {"HTTP_AUTHORIZATION": f"Bearer {other.raw}"}
    assert statuses(api, tenant_a, 2) == [200, 429]
    assert api.get("/api/v1/tenant", **second).status_code == 200


def test_the_tenant_rate_is_cached_for_its_ttl(tenant_a, clock, django_assert_num_queries):
    tenant_update_settings(tenant=tenant_a.tenant, changes={"rate_limit_per_s": 7.0}, actor="test")
    throttling.forget_tenant_rates()
    with django_assert_num_queries(1):
        assert throttling.tenant_rate(tenant_a.tenant.id) == 7.0
        assert throttling.tenant_rate(tenant_a.tenant.id) == 7.0
    clock.now += 31.0
    with django_assert_num_queries(1):
        throttling.tenant_rate(tenant_a.tenant.id)


# --- the shared Redis bucket --------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    import shutil

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path_factory.mktemp("redis"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


def test_processes_sharing_redis_share_one_bucket(redis_url):
    # two RedisBuckets stand for two web processes; together they get the key's capacity once
    first, second = throttling.RedisBuckets(redis_url), throttling.RedisBuckets(redis_url)
    key_id = int(time.time() * 1000) % 1_000_000_000
    results = [(first if i % 2 else second).take(key_id, 0.001, 4.0, 0.0) for i in range(8)]
    assert [ok for ok, _ in results] == [True] * 4 + [False] * 4
    assert results[-1][1] > 900  # about 1/rate seconds to the next token


def test_a_configured_redis_is_used_by_the_throttle(api, tenant_a, clock, settings, redis_url):
    settings.SOTTO = {**settings.SOTTO, "RATE_LIMIT_REDIS_URL": redis_url}
    set_key_rate(tenant_a, 0.01)  # Redis's own clock refills 1 token in 100 s: none during the test
    assert statuses(api, tenant_a, 2) == [200, 429]
    throttling._local.clear()  # a fresh process's local bucket would be full...
    assert statuses(api, tenant_a, 1) == [429]  # ...but the shared one is not


def test_an_unreachable_redis_falls_back_to_the_process_bucket(api, tenant_a, clock, settings):
    settings.SOTTO = {**settings.SOTTO, "RATE_LIMIT_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    set_key_rate(tenant_a, 0.5)
    assert statuses(api, tenant_a, 2) == [200, 429]
