"""Event ingest benchmark: events/s and per-batch latency, next to a bare INSERT measured in the same run.

    python -m bench.ingest_bench [--reps 300] [--users 200]
    (or ``make bench``, which calls ``main(out_dir)``)

Three paths, batch sizes 1, 10, 100 and 1000, all against the same ``profiles_userevent`` table:

- **bare**: one ``INSERT`` of one event row per statement, autocommit, on a dedicated psycopg
  connection (the runtime role, the tenant set for the session): one round trip plus the commit's
  WAL flush, nothing else. The floor any durable ingest pays.
- **service**: ``validate_events`` + ``events_ingest`` in a transaction scoped to the tenant exactly
  as ``TenantAPIView`` opens it (``atomic`` + ``activate_tenant``): pseudonymise, resolve items and vectors through the catalogue's selectors, lock
  the users' state rows, insert the events (ON CONFLICT DO NOTHING RETURNING), fold them into the
  states, update the states, commit.
- **what-if** (single events only): the service path with the catalogue's selectors joining the
  already-scoped transaction instead of opening their own ``tenant_context`` (patched in the
  benchmark only), to size that proposed change.
- **http**: ``POST /api/v1/events`` through Django's test client (API-key auth, DRF parsing,
  the request transaction, SLO middleware): everything but the socket.

The paths run interleaved (round robin, one call each per round), so a busy machine slows them
alike. Events go to a pool of existing users (the steady state) and items that have content vectors
(hash-seeded fake vectors: the encoder is not what is measured). The tenant ``bench-ingest`` is
reused across runs. Writes ``ingest.json`` under the output folder (default ``var/bench/``) and
prints a table. The goal: single-event p99 through the service at most 2x the bare insert's p99.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import platform as stdlib_platform
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BENCH_SLUG = "bench-ingest"
BATCH_SIZES = (1, 10, 100, 1000)
N_ITEMS = 50


def _setup_django() -> None:
    for path in (str(ROOT / "platform"), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import django

    django.setup()


class _FakeEncoder:
    model_id = "bench-hash-encoder"
    dim = 384

    def encode(self, texts: list[str]) -> Any:
        from apps.catalog.encoder import EncodeResult

        vectors = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            vec = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            vectors.append(vec / np.linalg.norm(vec))
        return EncodeResult(vectors=np.stack(vectors), truncated=[False] * len(texts))


def _prepare(n_users: int) -> tuple[int, str, list[str], list[str]]:
    """The bench tenant, a fresh API key, its items (with vectors) and users (with one event each)."""
    from unittest import mock

    from apps.catalog.selectors import item_pks_by_external_ids
    from apps.catalog.services import items_encode, items_upsert
    from apps.catalog.validation import ItemInput
    from apps.core.tenant_db import tenant_context
    from apps.profiles.services import events_ingest
    from apps.profiles.validation import validate_events
    from apps.tenancy.selectors import tenant_get
    from apps.tenancy.services import api_key_create, tenant_create

    tenant = tenant_get(slug=BENCH_SLUG) or tenant_create(slug=BENCH_SLUG, name="ingest benchmark", actor="bench")
    key = api_key_create(tenant=tenant, name=f"bench-{uuid.uuid4().hex[:6]}", scopes=["ingest"], actor="bench").raw
    items = [f"item-{n}" for n in range(N_ITEMS)]
    with mock.patch("apps.catalog.services.encoding_enqueue"):
        items_upsert(tenant_id=tenant.id, items=[
            ItemInput(external_id=i, title=f"Bench item {i}", description="", categories=("bench",), attributes={},
                      available=True) for i in items
        ])
    pks = list(item_pks_by_external_ids(tenant.id, items).values())
    with mock.patch("apps.catalog.encoding.encoder_for_tenant", return_value=_FakeEncoder()):
        items_encode(tenant_id=tenant.id, item_pks=pks)
    users = [f"bench-user-{n}" for n in range(n_users)]
    for start in range(0, n_users, 1000):
        chunk = users[start : start + 1000]
        payload = {"events": [_event(u, items[0]) for u in chunk]}
        with tenant_context(tenant.id):
            events_ingest(tenant_id=tenant.id, events=validate_events(payload))
    return tenant.id, key, users, items


def _event(user: str, item: str) -> dict[str, Any]:
    ts = datetime.now(tz=UTC) - timedelta(seconds=1)
    return {"event_id": uuid.uuid4().hex, "user": user, "item": item, "type": "view", "timestamp": ts.isoformat()}


def _batch(size: int, rng: np.random.Generator, users: list[str], items: list[str]) -> dict[str, Any]:
    return {"events": [_event(users[rng.integers(len(users))], items[rng.integers(len(items))]) for _ in range(size)]}


def _stats(samples_s: list[float], batch: int) -> dict[str, float]:
    arr = np.asarray(samples_s) * 1000.0
    return {
        "n": len(samples_s),
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "mean_ms": round(float(arr.mean()), 3),
        "events_per_s": round(batch * len(samples_s) / float(np.sum(samples_s)), 1),
    }


@contextlib.contextmanager
def _joined_scope(tenant_id: int) -> Iterator[None]:
    yield


class _BareInserter:
    """Single-row autocommit INSERTs into profiles_userevent on a plain psycopg connection."""

    SQL = (
        "INSERT INTO profiles_userevent (tenant_id, user_id, item_id, event_key, type, value, ts, folded) "
        "VALUES (%s, %s, %s, %s, 'view', 3.0, now(), true)"
    )

    def __init__(self, tenant_id: int, user_pk: int, item_pk: int) -> None:
        import psycopg
        from django.db import connection

        params = connection.get_connection_params()
        for name in ("cursor_factory", "context", "prepare_threshold"):
            params.pop(name, None)
        self.conn = psycopg.connect(**params, autocommit=True)
        self.conn.execute("SELECT set_config('app.tenant_id', %s, false)", [str(tenant_id)])
        self.row = (tenant_id, user_pk, item_pk)

    def __call__(self) -> None:
        self.conn.execute(self.SQL, [*self.row, os.urandom(32)])

    def round_trip(self) -> None:
        self.conn.execute("SELECT 1")


def run(*, reps: int = 300, n_users: int = 200, seed: int = 0) -> dict[str, Any]:
    """Each round runs bare (batch 1 only), service and http once, in turn, so all see the same load."""
    _setup_django()
    from django.db import connection, transaction
    from django.test import Client

    from apps.catalog.selectors import item_pks_by_external_ids
    from apps.core.tenant_db import activate_tenant
    from apps.profiles.selectors import user_pseudonym_id
    from apps.profiles.services import events_ingest
    from apps.profiles.validation import validate_events

    tenant_id, key, users, items = _prepare(n_users)
    rng = np.random.default_rng(seed)
    reps_for = {1: reps, 10: max(reps * 2 // 3, 20), 100: max(reps // 6, 10), 1000: max(reps // 30, 5)}
    user_pk = user_pseudonym_id(tenant_id, users[0])
    assert user_pk is not None
    bare_insert = _BareInserter(tenant_id, user_pk, item_pks_by_external_ids(tenant_id, [items[0]])[items[0]])
    client = Client()
    auth = {"Authorization": f"Bearer {key}"}

    def service_call(payload: dict[str, Any]) -> None:
        with transaction.atomic():
            activate_tenant(tenant_id)
            events_ingest(tenant_id=tenant_id, events=validate_events(payload))

    def service_call_joined(payload: dict[str, Any]) -> None:
        """What-if: the catalogue's selectors join the already-scoped transaction (see docs/results/ingest.md)."""
        from unittest import mock

        with mock.patch("apps.catalog.selectors.tenant_context", _joined_scope):
            service_call(payload)

    def http_call(body: str) -> None:
        response = client.post("/api/v1/events", body, content_type="application/json", headers=auth)
        if response.status_code != 201:
            raise RuntimeError(f"HTTP ingest answered {response.status_code}: {response.content[:300]!r}")

    bare: list[float] = []
    select1: list[float] = []
    joined: list[float] = []
    service: dict[int, dict[str, float]] = {}
    http: dict[int, dict[str, float]] = {}
    warmup = 5
    for size in BATCH_SIZES:
        timings: dict[str, list[float]] = {"service": [], "http": [], "bare": [], "select1": [], "service_joined": []}
        for n in range(reps_for[size] + warmup):
            calls: list[tuple[str, Any]] = [
                ("service", functools.partial(service_call, _batch(size, rng, users, items))),
                ("http", functools.partial(http_call, json.dumps(_batch(size, rng, users, items)))),
            ]
            if size == 1:
                calls += [("bare", bare_insert), ("select1", bare_insert.round_trip),
                          ("service_joined", functools.partial(service_call_joined, _batch(size, rng, users, items)))]
            for name, call in calls[n % len(calls):] + calls[: n % len(calls)]:
                started = time.perf_counter()
                call()
                if n >= warmup:
                    timings[name].append(time.perf_counter() - started)
        service[size] = _stats(timings["service"], size)
        http[size] = _stats(timings["http"], size)
        bare.extend(timings["bare"])
        select1.extend(timings["select1"])
        joined.extend(timings["service_joined"])
    bare_insert.conn.close()
    statements = _statement_counts(tenant_id, auth, client, rng, users, items)
    _revoke(tenant_id, key)
    connection.close()
    bare_stats = _stats(bare, 1)
    return {
        "machine": {"cpu_count": os.cpu_count(), "python": stdlib_platform.python_version(),
                    "processor": stdlib_platform.processor() or stdlib_platform.machine(),
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
        "users": n_users,
        "items": N_ITEMS,
        "bare_insert": bare_stats,
        "select_1_round_trip": _stats(select1, 1),
        "what_if_catalogue_joins_scope_single_event": _stats(joined, 1),
        "service": {str(k): v for k, v in service.items()},
        "http": {str(k): v for k, v in http.items()},
        "statements_per_single_event": statements,
        "single_event_p99_vs_bare": {
            "service": round(service[1]["p99_ms"] / bare_stats["p99_ms"], 2),
            "http": round(http[1]["p99_ms"] / bare_stats["p99_ms"], 2),
        },
        "single_event_p50_vs_bare": {
            "service": round(service[1]["p50_ms"] / bare_stats["p50_ms"], 2),
            "http": round(http[1]["p50_ms"] / bare_stats["p50_ms"], 2),
        },
    }


def _statement_counts(
    tenant_id: int, auth: dict[str, str], client: Any, rng: np.random.Generator, users: list[str], items: list[str]
) -> dict[str, int]:
    """SQL statements one single-event ingest sends (commit included), by path."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from apps.core.tenant_db import activate_tenant
    from apps.profiles.services import events_ingest
    from apps.profiles.validation import validate_events

    with CaptureQueriesContext(connection) as service, transaction.atomic():
        activate_tenant(tenant_id)
        events_ingest(tenant_id=tenant_id, events=validate_events(_batch(1, rng, users, items)))
    with CaptureQueriesContext(connection) as http:
        client.post("/api/v1/events", json.dumps(_batch(1, rng, users, items)), content_type="application/json", headers=auth)
    catalog = sum(1 for q in service.captured_queries if "catalog_" in q["sql"])
    return {"service": len(service.captured_queries), "http": len(http.captured_queries),
            "catalogue_reads": catalog, "bare": 1}


def _revoke(tenant_id: int, key: str) -> None:
    from apps.core.tenant_db import tenant_context
    from apps.tenancy import keys
    from apps.tenancy.models import ApiKey, Tenant
    from apps.tenancy.services import api_key_revoke

    tenant = Tenant.objects.get(pk=tenant_id)
    with tenant_context(tenant_id):
        key_id = ApiKey.objects.get(key_hash=keys.digest(key)).pk
    api_key_revoke(tenant=tenant, key_id=key_id, actor="bench")


def _table(result: dict[str, Any]) -> str:
    bare = result["bare_insert"]
    lines = [
        f"bare INSERT (1 row, autocommit): p50 {bare['p50_ms']:.3f} ms  p99 {bare['p99_ms']:.3f} ms  "
        f"({bare['events_per_s']:.0f} rows/s); a SELECT 1 round trip: p50 {result['select_1_round_trip']['p50_ms']:.3f} ms",
        f"{'batch':>6} | {'service p50':>11} {'p99':>9} {'events/s':>10} | {'http p50':>9} {'p99':>9} {'events/s':>10}",
    ]
    for size in BATCH_SIZES:
        s, h = result["service"][str(size)], result["http"][str(size)]
        lines.append(
            f"{size:>6} | {s['p50_ms']:>8.3f} ms {s['p99_ms']:>6.3f} ms {s['events_per_s']:>10.0f} | "
            f"{h['p50_ms']:>6.3f} ms {h['p99_ms']:>6.3f} ms {h['events_per_s']:>10.0f}"
        )
    joined = result["what_if_catalogue_joins_scope_single_event"]
    lines.append(f"what-if, catalogue selectors joining the scoped transaction, 1 event: p50 {joined['p50_ms']:.3f} ms "
                 f"p99 {joined['p99_ms']:.3f} ms")
    counts = result["statements_per_single_event"]
    lines.append(f"SQL statements per single event: bare {counts['bare']}, service {counts['service']} "
                 f"({counts['catalogue_reads']} catalogue reads), http {counts['http']}")
    ratio = result["single_event_p99_vs_bare"]
    lines.append(f"single-event p99 / bare p99: service {ratio['service']}x, http {ratio['http']}x (goal: service <= 2x)")
    p50 = result["single_event_p50_vs_bare"]
    lines.append(f"single-event p50 / bare p50: service {p50['service']}x, http {p50['http']}x")
    return "\n".join(lines)


def main(out_dir: Path | str = ROOT / "var" / "bench", reps: int = 300, n_users: int = 200) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = run(reps=reps, n_users=n_users)
    (out / "ingest.json").write_text(json.dumps(result, indent=2))
    print(_table(result))
    print(f"wrote {out / 'ingest.json'}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--reps", type=int, default=300, help="single-event repetitions (larger batches fewer)")
    parser.add_argument("--users", type=int, default=200)
    args = parser.parse_args()
    main(args.out, reps=args.reps, n_users=args.users)
