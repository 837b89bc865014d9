"""Event ingest benchmark: events/s and per-batch latency, next to a bare INSERT measured in the same run.

    python -m bench.ingest_bench [--reps 300] [--users 200]
    (or ``make bench``, which calls ``main(out_dir)``)

Three paths, batch sizes 1, 10, 100 and 1000, all against the same ``profiles_userevent`` table:

- **bare** (the floor): one ``INSERT`` statement of the batch's event rows (one row for a single
  event), autocommit, on a dedicated psycopg connection (the runtime role, the tenant set for the
  session): one round trip, the rows' index entries and foreign-key checks, the commit's WAL flush,
  nothing else. What any durable ingest of those rows pays at least.
- **service**: ``validate_events`` + ``events_ingest`` in a transaction scoped to the tenant exactly
  as ``TenantAPIView`` opens it (``atomic`` + ``activate_tenant``): pseudonymise, one read (lock the
  users' state rows, resolve the items and their vectors), fold, one write (insert the events ON
  CONFLICT DO NOTHING, update the states), commit.
- **http**: ``POST /api/v1/events`` through Django's test client (API-key auth, DRF parsing,
  the request transaction, SLO middleware, access log): the whole request path but the socket.

The paths run interleaved (round robin, one call each per round), so a busy machine slows them
alike. Events go to a pool of existing users (the steady state) and items that have content vectors
(hash-seeded fake vectors: the encoder is not what is measured). The tenant ``bench-ingest`` is
reused across runs. Writes ``ingest.json`` under the output folder (default ``var/bench/``) and
prints a table, the SQL statements one request sends, and the goals of issue 17: single-event
p99 through HTTP at most 2x the bare insert's p99, and at least 20,000 events/s in batches of 1000.
The load average is recorded at the start and the end: on a shared machine it says how far to
trust the absolute figures (compare only within a run).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform as stdlib_platform
import sys
import time
import uuid
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

    tenant = tenant_get(slug=BENCH_SLUG) or tenant_create(
        slug=BENCH_SLUG, name="ingest benchmark", actor="bench"
    )
    key = api_key_create(
        tenant=tenant, name=f"bench-{uuid.uuid4().hex[:6]}", scopes=["ingest"], actor="bench"
    ).raw
    items = [f"item-{n}" for n in range(N_ITEMS)]
    with mock.patch("apps.catalog.services.encoding_enqueue"):
        items_upsert(
            tenant_id=tenant.id,
            items=[
                ItemInput(
                    external_id=i,
                    title=f"Bench item {i}",
                    description="",
                    categories=("bench",),
                    attributes={},
                    available=True,
                )
                for i in items
            ],
        )
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
    return {
        "event_id": uuid.uuid4().hex,
        "user": user,
        "item": item,
        "type": "view",
        "timestamp": ts.isoformat(),
    }


def _batch(size: int, rng: np.random.Generator, users: list[str], items: list[str]) -> dict[str, Any]:
    return {
        "events": [
            _event(users[rng.integers(len(users))], items[rng.integers(len(items))]) for _ in range(size)
        ]
    }


def _stats(samples_s: list[float], batch: int) -> dict[str, float]:
    arr = np.asarray(samples_s) * 1000.0
    return {
        "n": len(samples_s),
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "mean_ms": round(float(arr.mean()), 3),
        "events_per_s": round(batch * len(samples_s) / float(np.sum(samples_s)), 1),
    }


class _BareInserter:
    """Autocommit INSERTs into profiles_userevent on a plain psycopg connection: one row per statement
    (the single-event floor), or a batch's rows in one statement (the floor for that batch size)."""

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

    BATCH_SQL = (
        "INSERT INTO profiles_userevent (tenant_id, user_id, item_id, event_key, type, value, ts, folded) "
        "SELECT %s, %s, %s, substring(%s::bytea FROM 1 + 32 * i FOR 32), 'view', 3.0, now(), true "
        "FROM generate_series(0, %s - 1) AS i"
    )

    def __call__(self) -> None:
        self.conn.execute(self.SQL, [*self.row, os.urandom(32)])

    def batch(self, size: int) -> None:
        if size == 1:
            self()
        else:
            self.conn.execute(self.BATCH_SQL, [*self.row, os.urandom(32 * size), size])

    def round_trip(self) -> None:
        self.conn.execute("SELECT 1")


GOAL_P99_RATIO = 2.0
GOAL_BATCH_EVENTS_PER_S = 20_000.0
GOAL_BATCH_SIZE = 1000


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

    load_at_start = round(os.getloadavg()[0], 2)
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

    def http_call(body: str) -> None:
        response = client.post("/api/v1/events", body, content_type="application/json", headers=auth)
        if response.status_code != 201:
            raise RuntimeError(f"HTTP ingest answered {response.status_code}: {response.content[:300]!r}")

    bare_by_size: dict[int, dict[str, float]] = {}
    bare: list[float] = []
    select1: list[float] = []
    service: dict[int, dict[str, float]] = {}
    http: dict[int, dict[str, float]] = {}
    warmup = 5
    for size in BATCH_SIZES:
        timings: dict[str, list[float]] = {"service": [], "http": [], "bare": [], "select1": []}
        for n in range(reps_for[size] + warmup):
            calls: list[tuple[str, Any]] = [
                ("service", functools.partial(service_call, _batch(size, rng, users, items))),
                ("http", functools.partial(http_call, json.dumps(_batch(size, rng, users, items)))),
                ("bare", functools.partial(bare_insert.batch, size)),
            ]
            if size == 1:
                calls.append(("select1", bare_insert.round_trip))
            for name, call in calls[n % len(calls) :] + calls[: n % len(calls)]:
                started = time.perf_counter()
                call()
                if n >= warmup:
                    timings[name].append(time.perf_counter() - started)
        service[size] = _stats(timings["service"], size)
        http[size] = _stats(timings["http"], size)
        bare_by_size[size] = _stats(timings["bare"], size)
        if size == 1:
            bare.extend(timings["bare"])
        select1.extend(timings["select1"])
    bare_insert.conn.close()
    statements = {
        str(size): _statement_counts(tenant_id, auth, client, rng, users, items, size) for size in (1, 1000)
    }
    _revoke(tenant_id, key)
    connection.close()
    bare_stats = _stats(bare, 1)
    batch_rate = http[GOAL_BATCH_SIZE]["events_per_s"]
    p99_ratio = round(http[1]["p99_ms"] / bare_stats["p99_ms"], 2)
    return {
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": stdlib_platform.python_version(),
            "processor": stdlib_platform.processor() or stdlib_platform.machine(),
            "load_average_1m_at_start": load_at_start,
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
        "users": n_users,
        "items": N_ITEMS,
        "bare_insert": bare_stats,
        "bare": {str(k): v for k, v in bare_by_size.items()},
        "select_1_round_trip": _stats(select1, 1),
        "service": {str(k): v for k, v in service.items()},
        "http": {str(k): v for k, v in http.items()},
        "statements": statements,
        "single_event_p99_vs_bare": {
            "service": round(service[1]["p99_ms"] / bare_stats["p99_ms"], 2),
            "http": p99_ratio,
        },
        "single_event_p50_vs_bare": {
            "service": round(service[1]["p50_ms"] / bare_stats["p50_ms"], 2),
            "http": round(http[1]["p50_ms"] / bare_stats["p50_ms"], 2),
        },
        "goals": {
            "single_event_http_p99_at_most_x_bare": GOAL_P99_RATIO,
            "single_event_met": p99_ratio <= GOAL_P99_RATIO,
            "batch_http_events_per_s_at_least": GOAL_BATCH_EVENTS_PER_S,
            "batch_size": GOAL_BATCH_SIZE,
            "batch_met": batch_rate >= GOAL_BATCH_EVENTS_PER_S,
        },
    }


def _statement_counts(
    tenant_id: int,
    auth: dict[str, str],
    client: Any,
    rng: np.random.Generator,
    users: list[str],
    items: list[str],
    size: int,
) -> dict[str, int]:
    """SQL statements one ingest of ``size`` events sends, ``BEGIN`` and ``COMMIT`` included, by path."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from apps.core.tenant_db import activate_tenant
    from apps.profiles.services import events_ingest
    from apps.profiles.validation import validate_events

    with CaptureQueriesContext(connection) as service, transaction.atomic():
        activate_tenant(tenant_id)
        events_ingest(tenant_id=tenant_id, events=validate_events(_batch(size, rng, users, items)))
    with CaptureQueriesContext(connection) as http:
        client.post(
            "/api/v1/events",
            json.dumps(_batch(size, rng, users, items)),
            content_type="application/json",
            headers=auth,
        )
    return {"service": len(service.captured_queries), "http": len(http.captured_queries), "bare": 1}


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
    http1 = result["http"]["1"]
    lines = [
        f"bare INSERT (1 row, autocommit): p50 {bare['p50_ms']:.3f} ms  p99 {bare['p99_ms']:.3f} ms  "
        f"({bare['events_per_s']:.0f} rows/s); a SELECT 1 round trip: p50 {result['select_1_round_trip']['p50_ms']:.3f} ms",
        f"{'batch':>6} | {'bare p50':>9} {'p99':>9} {'rows/s':>8} | {'service p50':>11} {'p99':>9} {'events/s':>8} | "
        f"{'http p50':>9} {'p99':>9} {'events/s':>8}",
    ]
    for size in BATCH_SIZES:
        b, s, h = result["bare"][str(size)], result["service"][str(size)], result["http"][str(size)]
        lines.append(
            f"{size:>6} | {b['p50_ms']:>6.3f} ms {b['p99_ms']:>6.3f} ms {b['events_per_s']:>8.0f} | "
            f"{s['p50_ms']:>8.3f} ms {s['p99_ms']:>6.3f} ms {s['events_per_s']:>8.0f} | "
            f"{h['p50_ms']:>6.3f} ms {h['p99_ms']:>6.3f} ms {h['events_per_s']:>8.0f}"
        )
    counts = result["statements"]
    lines.append(
        "SQL statements per request (BEGIN and COMMIT included): "
        + ", ".join(
            f"{size} event(s): http {c['http']}, service {c['service']}" for size, c in counts.items()
        )
        + "; bare insert 1 (BEGIN leaves in one pipeline with the tenant setting: one round trip fewer)"
    )
    goals = result["goals"]
    ratio = result["single_event_p99_vs_bare"]["http"]
    p50 = result["single_event_p50_vs_bare"]["http"]
    lines.append(
        f"single event over HTTP: p50 {http1['p50_ms']:.3f} ms vs floor {bare['p50_ms']:.3f} ms = {p50}x; "
        f"p99 {http1['p99_ms']:.3f} ms vs floor {bare['p99_ms']:.3f} ms = {ratio}x "
        f"(goal <= {goals['single_event_http_p99_at_most_x_bare']}x: {'met' if goals['single_event_met'] else 'not met'}; "
        f"service alone {result['single_event_p99_vs_bare']['service']}x)"
    )
    batch = result["http"][str(goals["batch_size"])]["events_per_s"]
    floor = result["bare"][str(goals["batch_size"])]["events_per_s"]
    lines.append(
        f"batches of {goals['batch_size']} over HTTP: {batch:.0f} events/s "
        f"(goal >= {goals['batch_http_events_per_s_at_least']:.0f}: {'met' if goals['batch_met'] else 'not met'}; "
        f"the same rows in one bare INSERT: {floor:.0f} rows/s)"
    )
    machine = result["machine"]
    lines.append(
        f"load average (1 min) at start {machine['load_average_1m_at_start']}, at end {machine['load_average_1m_at_end']} "
        f"on {machine['cpu_count']} cores"
    )
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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument(
        "--reps", type=int, default=300, help="single-event repetitions (larger batches fewer)"
    )
    parser.add_argument("--users", type=int, default=200)
    args = parser.parse_args()
    main(args.out, reps=args.reps, n_users=args.users)
