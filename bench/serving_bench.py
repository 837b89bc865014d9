"""Serving benchmark: the personal, search and similar strategies through the real stack, each beside its floor.

    python -m bench.serving_bench [--seconds 10] [--out var/bench]
    (or ``make bench``, which calls ``main(out_dir)``)

What runs:

- **The stack**: the embedded PostgreSQL server with a database of the benchmark's own
  (``sotto_bench_serving``, created and migrated on first use, so 100k synthetic items never land
  in the dev/demo database), a dedicated tenant ``bench-serving``, and gunicorn (2 workers x 4
  threads, gthread, heartbeat file in /dev/shm, as the image runs it) on a free loopback port
  with the production settings path (``config.settings.local``; API-key auth, SLO middleware and
  access log on; only the per-key rate limit is lifted so 8 clients are not 429'd).
- **Data**: 100 000 items with *synthetic* 384-d vectors seeded by real ones: the 9 742 MovieLens
  movies are encoded once by the catalogue's encoder (cached under var/bench/), and each item is
  one of them plus Gaussian noise (about 10 items per movie, cosine about 0.9 to it), with the
  movie's genres as categories; 2 % are unavailable. Items and vectors are bulk-loaded with SQL
  ``COPY`` (the vectors in pgvector's binary format), the partition's HNSW index dropped during the
  load and rebuilt after it. 10 000 users get 8 ratings each (6 from a favourite genre, 2 from
  another) through ``events_ingest``, the events API's service, so their real-time states are real.
- **Model**: an **active private model**, trained once through the product's own path
  (``training_run_start`` at ε = 4, the ``tower`` design that ``auto`` picks for 10 000 users, the
  ``sotto.modeling.train`` task run eagerly in process: DP releases, served vectors materialised
  for the version, their HNSW index, the pointer switch). The tenant and its model are reused by
  later runs while they are complete.
- **Loads**: for concurrency 1 and 8, closed loops of N client threads (one keep-alive
  ``http.client`` connection each), ``--seconds`` per (strategy, path), in 4 interleaved rounds so
  that load from elsewhere on the machine hits every path alike: ``personal``
  (``/recommendations?k=10``, a random one of 2 000 users, default rules: exclude seen, available
  only), ``search`` (``/search?k=10``, 400 queries, half with a user; every query is in the
  servers' LRU before timing, the cold encode is measured separately) and ``similar``
  (``/items/{id}/similar?k=10``, a random item).
- **Floors**: beside each strategy, in the same rounds and from the same client process, the bare
  HNSW top-10 through psycopg with **the same vector, k and filters** as its API request: the
  model's user vector with the user's seen items excluded over the version's served vectors
  (``personal``), the query vector or its blend with the user's interest (``search``), the item's
  own vector with itself excluded (``similar``); availability and ``hnsw.ef_search`` as the product
  sets them, iterative scans on. One round trip each: autocommit, knobs set once per session,
  the vector in pgvector's binary form, the statement prepared by psycopg, the connections kept
  and warmed across rounds (as gunicorn keeps its own).
- **Recall@10**: for 200 users, the API's ``personal`` answers against the exact top-10 by cosine
  over all served vectors with the same rules (numpy brute force), and the bare served-vector and
  content-vector indexes against the exact unfiltered top-10.

Writes ``serving.json`` under the output folder and prints a table and, per strategy, the line
``p99 X ms vs floor Y ms = R×`` (concurrency 1) and the throughput ratio (concurrency 8). Goals:
p99 at most 1.5x the floor's at concurrency 1, throughput at least 0.7x the floor's at
concurrency 8, recall@10 at least 0.95. Single-event ingest has its own benchmark
(``bench.ingest_bench``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform as stdlib_platform
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.support import ensure_bench_database, free_port

ROOT = Path(__file__).resolve().parents[1]
SLUG = "bench-serving"
BENCH_DB = "sotto_bench_serving"
N_ITEMS = 100_000
N_USERS = 10_000
HISTORY = 8
N_CENTRES = 200
N_CATEGORIES = 20
DIM = 384
SEED = 20_261_127
CONCURRENCY = (1, 8)
ROUNDS = 4  # each (path, concurrency) runs in ROUNDS slices, the paths interleaved
WORKERS, THREADS = 2, 4
RECALL_USERS = 200
SAMPLE_USERS = 2_000  # users the loads draw from (their vectors are read once for the floor)


def _child_env() -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "SOTTO_DB_NAME": BENCH_DB,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'platform'}",
    }


def _setup_django() -> None:
    for path in (str(ROOT / "platform"), str(ROOT)):
        if path not in sys.path:
            sys.path.insert(0, path)
    import django

    django.setup()


def ensure_database() -> None:
    """Create (first run) and migrate the benchmark's own database, as the owner role."""
    ensure_bench_database(BENCH_DB)


def _say(message: str) -> None:
    print(f"-- {message}", flush=True)


# --- data ------------------------------------------------------------------------------------------

DATA_VERSION = "bench-seeded-v1"  # stored as the vectors' model: a change of recipe reloads the tenant
COPIES_SIGMA = 0.5  # per-item variation around its seed movie (norm of the added noise)


def seed_vectors() -> tuple[np.ndarray, list[list[str]]]:
    """Real content vectors of the MovieLens movies ("title. genres": the catalogue's encoder and text
    recipe without the tag descriptions, which triple the encoding time) and their genres.

    Encoded once and cached under var/bench/ (keyed by the encoder's model id).
    """
    from apps.catalog.encoder import get_encoder
    from apps.catalog.importing import movielens_items
    from apps.catalog.validation import content_text
    from apps.core.conf import sotto

    movies = movielens_items(ROOT / "data" / "ml-latest-small")
    encoder = get_encoder(None, sotto().encoder_precision)
    cache = ROOT / "var" / "bench" / f"serving-seeds-titles-{encoder.model_id.replace('/', '-')}.npy"
    genres = [list(m.categories) or ["none"] for m in movies]
    if cache.is_file():
        seeds = np.load(cache)
        if seeds.shape == (len(movies), DIM):
            return seeds, genres
    _say(f"encoding the {len(movies)} MovieLens movies once ({encoder.model_id}); cached in {cache}")
    seeds = encoder.encode([content_text(m.title, m.categories, "") for m in movies], batch_size=64).vectors
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, seeds)
    return seeds, genres


def synthetic_items(
    seeds: np.ndarray, genres: list[list[str]]
) -> tuple[np.ndarray, list[list[str]], np.ndarray]:
    """(vectors, categories, available) for N_ITEMS items; deterministic.

    Item i varies seed movie ``i % n_seeds`` (about 10 items per movie): the seed's real content
    vector plus Gaussian noise of norm about ``COPIES_SIGMA``, renormalised (cosine to the seed
    about 0.9), with the movie's genres as categories. So the catalogue keeps the neighbourhood
    structure of real sentence embeddings (topics, genres) at 10x the size; 2 % are unavailable.
    """
    rng = np.random.default_rng(SEED)
    which = np.arange(N_ITEMS) % len(seeds)
    noise = rng.standard_normal((N_ITEMS, DIM)).astype(np.float32) * np.float32(COPIES_SIGMA / np.sqrt(DIM))
    vectors = seeds[which] + noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    categories = [genres[int(j)] for j in which]
    available = rng.random(N_ITEMS) >= 0.02
    return vectors.astype(np.float32), categories, available


def user_histories(categories: list[list[str]]) -> list[list[tuple[int, float]]]:
    """Per user: HISTORY (item index, rating) pairs, 6 from a favourite genre and 2 from another; deterministic."""
    rng = np.random.default_rng(SEED + 1)
    by_genre: dict[str, list[int]] = {}
    for i, cats in enumerate(categories):
        for g in cats:
            by_genre.setdefault(g, []).append(i)
    names = sorted(g for g, items in by_genre.items() if len(items) >= 200)
    weights = np.array([len(by_genre[g]) for g in names], dtype=np.float64)
    weights /= weights.sum()
    out = []
    for _ in range(N_USERS):
        first, second = rng.choice(len(names), size=2, replace=False, p=weights)
        items: set[int] = set()
        while len(items) < HISTORY:
            pool = by_genre[names[int(first if len(items) < 6 else second)]]
            items.add(pool[int(rng.integers(len(pool)))])
        out.append([(i, float(rng.choice([3.0, 3.5, 4.0, 4.5, 5.0]))) for i in sorted(items)])
    return out


def _binary_vectors(vectors: np.ndarray) -> bytes:
    """A ``COPY ... (FORMAT binary)`` stream of (int4 index, vector) rows: pgvector's binary form is
    int16 dim, int16 unused, then big-endian float4s."""
    row = np.dtype(
        [
            ("fields", ">i2"),
            ("len1", ">i4"),
            ("idx", ">i4"),
            ("len2", ">i4"),
            ("dim", ">i2"),
            ("unused", ">i2"),
            ("v", ">f4", (DIM,)),
        ]
    )
    rows = np.zeros(len(vectors), dtype=row)
    rows["fields"], rows["len1"], rows["idx"] = 2, 4, np.arange(len(vectors))
    rows["len2"], rows["dim"], rows["v"] = 4 + 4 * DIM, DIM, vectors
    header = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
    return header + rows.tobytes() + b"\xff\xff"


def _owner_connection() -> Any:
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    return psycopg.connect(
        dbname=db["NAME"],
        host=db["HOST"],
        port=db["PORT"],
        user=settings.DATABASE_OWNER["USER"],
        password=settings.DATABASE_OWNER["PASSWORD"] or None,
        autocommit=True,
    )


def runtime_connection(tenant_id: int, ef_search: int, iterative: bool = False) -> Any:
    """A bare psycopg connection as the runtime role (RLS applies), tenant, ``hnsw.ef_search`` and
    ``hnsw.iterative_scan`` set for the session, pgvector's types registered (vectors in binary)."""
    import psycopg
    from django.conf import settings
    from pgvector.psycopg import register_vector

    db = settings.DATABASES["default"]
    conn = psycopg.connect(
        dbname=db["NAME"],
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        password=db["PASSWORD"] or None,
        autocommit=True,
    )
    register_vector(conn)
    conn.execute(
        "SELECT set_config('app.tenant_id', %s, false), set_config('hnsw.ef_search', %s, false), "
        "set_config('hnsw.iterative_scan', %s, false)",
        [str(tenant_id), str(ef_search), "relaxed_order" if iterative else "off"],
    )
    return conn


def _literal(vector: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def _loaded(tenant_id: int) -> bool:
    from django.db import connection

    from apps.core.tenant_db import tenant_context

    with tenant_context(tenant_id), connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM catalog_itemvector WHERE tenant_id = %s AND model = %s",
            [tenant_id, DATA_VERSION],
        )
        vectors = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM profiles_userstate WHERE tenant_id = %s AND data IS NOT NULL", [tenant_id]
        )
        users = cursor.fetchone()
    return bool(vectors and users and vectors[0] == N_ITEMS and users[0] >= N_USERS)


def load(
    tenant_id: int, vectors: np.ndarray, categories: list[list[str]], available: np.ndarray
) -> dict[str, float]:
    """Items and vectors by COPY, the HNSW index rebuilt after the load; returns timings."""
    from apps.catalog.partitions import partition_name

    part = partition_name(tenant_id)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    with _owner_connection() as conn:
        conn.execute("SELECT set_config('app.tenant_id', %s, false)", [str(tenant_id)])
        for table in (
            "profiles_userevent",
            "profiles_userstate",
            "profiles_userattribute",
            "profiles_enduser",
            "catalog_item",
        ):  # the vectors go with their items (ON DELETE CASCADE)
            conn.execute(f"DELETE FROM {table} WHERE tenant_id = %s", [tenant_id])  # noqa: S608 # nosec B608 - fixed names
        row = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s", [f"{part}_hnsw"]
        ).fetchone()
        if row is None:
            raise RuntimeError(f"{part}_hnsw not found: is the catalogue migrated?")
        indexdef = str(row[0])
        conn.execute(f'DROP INDEX "{part}_hnsw"')
        conn.execute(
            "CREATE TEMP TABLE bench_items (external_id text, title text, categories text, available boolean)"
        )
        with conn.cursor().copy("COPY bench_items FROM STDIN") as copy:
            for i in range(N_ITEMS):
                cats = "{" + ",".join(f'"{c}"' for c in categories[i]) + "}"
                copy.write_row((f"b{i}", f"bench item {i}", cats, bool(available[i])))
        conn.execute(
            """
            INSERT INTO catalog_item (tenant_id, external_id, title, description, categories, attributes, available,
                                      content_hash, encoding_status, encoded_hash, encoding_model, encoding_truncated,
                                      encoding_error, encoding_updated_at, created_at, updated_at)
            SELECT %s, external_id, title, '', categories::varchar[], '{}'::jsonb, available, repeat('0', 64), 'ready',
                   repeat('0', 64), 'bench-synthetic', false, '', now(), now(), now()
            FROM bench_items
            """,
            [tenant_id],
        )
        timings["items_s"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute(f"CREATE TEMP TABLE bench_vectors (idx integer, embedding vector({DIM}))")
        with conn.cursor().copy("COPY bench_vectors FROM STDIN (FORMAT binary)") as copy:
            copy.write(_binary_vectors(vectors))
        conn.execute(
            """
            INSERT INTO catalog_itemvector (tenant_id, item_id, external_id, embedding, available, categories, model,
                                            content_hash, updated_at)
            SELECT i.tenant_id, i.id, i.external_id, v.embedding, i.available, i.categories, %s, repeat('0', 64), now()
            FROM bench_vectors v JOIN catalog_item i ON i.tenant_id = %s AND i.external_id = 'b' || v.idx
            """,
            [DATA_VERSION, tenant_id],
        )
        timings["vectors_copy_s"] = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 1")
        conn.execute(indexdef)
        conn.execute(f'ANALYZE "{part}"')
        conn.execute("ANALYZE catalog_item")
        timings["hnsw_build_s"] = time.perf_counter() - started
    return {k: round(v, 1) for k, v in timings.items()}


def ingest_histories(tenant_id: int, histories: list[list[tuple[int, float]]]) -> float:
    """Every user's ratings through ``events_ingest`` (1 000 events per call), as the events API does."""
    from apps.core.tenant_db import tenant_context
    from apps.profiles.services import events_ingest
    from apps.profiles.validation import validate_events

    started = time.perf_counter()
    batch: list[dict[str, Any]] = []
    ts = 1_700_000_000

    def flush() -> None:
        with tenant_context(tenant_id):
            events_ingest(tenant_id=tenant_id, events=validate_events({"events": batch}))
        batch.clear()

    for u, history in enumerate(histories):
        for n, (item, rating) in enumerate(history):
            batch.append(
                {
                    "event_id": f"h-{u}-{n}",
                    "user": f"bu{u}",
                    "item": f"b{item}",
                    "type": "rating",
                    "value": rating,
                    "timestamp": ts + n * 60,
                }
            )
        if len(batch) >= 1000:
            flush()
        if u % 2000 == 1999:
            _say(f"users with history: {u + 1}/{N_USERS}")
    if batch:
        flush()
    return round(time.perf_counter() - started, 1)


MODEL_EPSILON = 4.0
# The product's default for a tenant of 10,000 users ("auto" picks the Opacus tower from 5,000 users).
# The "factors" design was tried first: its served vectors share one padding coordinate (mean cosine
# 0.97 between any two items), on which the served HNSW index reached recall@10 0.77 at ef_search 200.
MODEL_DESIGN = "tower"


def _served_count(tenant_id: int, version: int) -> int:
    from apps.core.tenant_db import tenant_context
    from apps.modeling.served import vectors_count

    with tenant_context(tenant_id):
        return vectors_count(tenant_id=tenant_id, version=version)


def ensure_model(tenant_id: int) -> dict[str, Any]:
    """The tenant's active private model, trained once through the product's own path and reused.

    ``training_run_start`` (the service behind ``POST /api/v1/training-runs``: ε charged to the
    ledger, audited) queues the ``sotto.modeling.train`` task, which Celery runs eagerly here, in
    this process, instead of on a worker: the same ``training_run_execute`` (DP releases, served
    vectors materialised for the version, their HNSW index, the pointer switch). The tenant's
    settings choose the ``tower`` design (what ``auto`` picks at this size) at ε = 4 with no
    holdout: serving speed does not depend on the model's quality, and with no holdout the
    activation gate has nothing to compare (``gate_decision``: "not measured (no holdout):
    activated ungated"). A version of another design is replaced by a new run (ε charged again).
    """
    from apps.modeling.selectors import active_version, clear_pointer_cache, model_versions
    from apps.modeling.services import training_run_start
    from apps.tenancy.models import Tenant
    from apps.tenancy.services import tenant_update_settings
    from config.celery import app

    clear_pointer_cache()
    version = active_version(tenant_id)
    if version is not None and _served_count(tenant_id, version) == N_ITEMS:
        design = next(
            (v["design"] for v in model_versions(tenant_id=tenant_id) if v["version"] == version), None
        )
        if design == MODEL_DESIGN:
            return {"reused": True, "version": version, "design": design}
    tenant = Tenant.objects.get(pk=tenant_id)
    tenant_update_settings(
        tenant=tenant,
        actor="bench",
        changes={"dp_design": MODEL_DESIGN, "modeling": {"holdout_fraction": 0.0, "seed": SEED}},
    )
    _say(
        f"training a private model ({MODEL_DESIGN}, epsilon {MODEL_EPSILON}) through training_run_start, "
        "run in process; then its served vectors and their HNSW index"
    )
    started = time.perf_counter()
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        run = training_run_start(tenant_id=tenant_id, epsilon=MODEL_EPSILON, actor="bench")
    finally:
        app.conf.task_always_eager = eager
    clear_pointer_cache()
    version = active_version(tenant_id)
    if version is None:
        raise RuntimeError(f"training run {run['id']} did not activate a model; see the run's error")
    return {
        "reused": False,
        "version": version,
        "run": int(run["id"]),
        "design": MODEL_DESIGN,
        "epsilon": MODEL_EPSILON,
        "train_s": round(time.perf_counter() - started, 1),
        "served_vectors": _served_count(tenant_id, version),
    }


@dataclass
class Inputs:
    """What the server computes from each sampled user's real-time state, computed here the same way,
    so that each floor query carries exactly the vector and filters of its API request."""

    version: int
    dim: int
    personal: dict[int, np.ndarray]  # the model's user vector (user tower over the state)
    content: dict[int, np.ndarray]  # the content-space interest (the search blend's user side)
    seen_pks: dict[int, list[int]]  # what exclude_seen drops
    seen: dict[int, list[int]]  # the same, as item indices


def user_inputs(tenant_id: int, users: list[int]) -> Inputs:
    """Per sampled user, the state read through the serving selectors' own reads and turned into vectors
    by the active model's numpy tower (``user_interest``) and by ``content_interest``."""
    from apps.catalog.selectors import external_ids_by_pks
    from apps.core.tenant_db import tenant_context
    from apps.modeling.interest import user_interest
    from apps.modeling.selectors import serving_model
    from apps.profiles.selectors import user_state_and_seen
    from apps.serving.ranking import content_interest

    model = serving_model(tenant_id)
    if model is None:
        raise RuntimeError("the bench tenant has no active model")
    out = Inputs(
        version=int(model.version), dim=int(model.item_dim), personal={}, content={}, seen_pks={}, seen={}
    )
    with tenant_context(tenant_id):
        for u in users:
            state, pks = user_state_and_seen(tenant_id, f"bu{u}")
            vec = content_interest(state)
            if state is None or vec is None:
                continue
            out.personal[u] = user_interest(model, state)
            out.content[u] = vec
            out.seen_pks[u] = sorted(pks)
            out.seen[u] = [int(ext[1:]) for ext in external_ids_by_pks(tenant_id, pks).values()]
    return out


# --- the server --------------------------------------------------------------------------------------


class Server:
    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        env = {**_child_env(), "SOTTO_RATE_LIMIT_PER_S": "0"}
        handle = self.log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--pythonpath",
                "platform",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(WORKERS),
                "--threads",
                str(THREADS),
                "--worker-class",
                "gthread",
                "--keep-alive",
                "30",
                # as the image runs it (deploy/Dockerfile): the workers' heartbeat file in memory
                "--worker-tmp-dir",
                "/dev/shm",  # noqa: S108 # nosec B108 - gunicorn's own heartbeat files (mkstemp, mode 0600), as in the image
                "--no-control-socket",
            ],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        deadline = time.monotonic() + 90
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/health/live")
                if conn.getresponse().status == 200:
                    conn.close()
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start; see {self.log}")
            time.sleep(0.3)

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


# --- loads -------------------------------------------------------------------------------------------

Request = Callable[[random.Random], tuple[str, str, bytes | None]]


@dataclass
class Samples:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def summary(self, seconds: float) -> dict[str, Any]:
        arr = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "n": len(self.latencies_ms),
            "p50_ms": round(float(np.percentile(arr, 50)), 2),
            "p95_ms": round(float(np.percentile(arr, 95)), 2),
            "p99_ms": round(float(np.percentile(arr, 99)), 2),
            "rps": round(len(self.latencies_ms) / seconds, 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
        }


def _closed_loop(
    threads: int,
    seconds: float,
    one: Callable[[Any, random.Random], int],
    connect: Callable[[], Any],
    close: Callable[[Any], None],
    samples: Samples | None = None,
) -> Samples:
    """``threads`` clients, each calling ``one(conn, rng)`` back to back until the deadline (adds to ``samples``)."""
    samples = samples if samples is not None else Samples()
    barrier = threading.Barrier(threads + 1)
    deadline = [0.0]

    def run(seed: int) -> None:
        rng = random.Random(seed)
        conn = connect()
        local: list[float] = []
        statuses: dict[int, int] = {}
        errors = 0
        barrier.wait()
        while time.perf_counter() < deadline[0]:
            started = time.perf_counter()
            try:
                status = one(conn, rng)
            except (OSError, http.client.HTTPException):
                errors += 1
                close(conn)
                conn = connect()
                continue
            local.append((time.perf_counter() - started) * 1000.0)
            statuses[status] = statuses.get(status, 0) + 1
        close(conn)
        with samples.lock:
            samples.latencies_ms.extend(local)
            samples.errors += errors
            for key, count in statuses.items():
                samples.statuses[key] = samples.statuses.get(key, 0) + count

    workers = [threading.Thread(target=run, args=(SEED + i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    deadline[0] = time.perf_counter() + seconds
    barrier.wait()
    for worker in workers:
        worker.join(seconds + 60)
    return samples


def http_load(
    port: int, request: Request, threads: int, seconds: float, samples: Samples | None = None
) -> Samples:
    def connect() -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def one(conn: http.client.HTTPConnection, rng: random.Random) -> int:
        method, path, body = request(rng)
        headers = dict(HEADERS)
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return int(response.status)

    return _closed_loop(threads, seconds, one, connect, lambda c: c.close(), samples)


HEADERS: dict[str, str] = {}


Query = Callable[[random.Random], tuple[str, list[Any]]]


class FloorPool:
    """Bare connections kept across the rounds of one (strategy, concurrency), as gunicorn keeps its
    own (``CONN_MAX_AGE``): each is warmed by a few queries (the backend's caches, psycopg's prepare
    after 5 runs) before it is timed, so the floor never pays a backend's start-up."""

    WARM = 6

    def __init__(self, tenant_id: int, ef_search: int, query: Query) -> None:
        self.tenant_id, self.ef_search, self.query = tenant_id, ef_search, query
        self.idle: list[Any] = []
        self.lock = threading.Lock()

    def connect(self) -> Any:
        with self.lock:
            if self.idle:
                return self.idle.pop()
        conn = runtime_connection(self.tenant_id, self.ef_search, iterative=True)
        rng = random.Random(SEED)
        for _ in range(self.WARM):
            sql, params = self.query(rng)
            conn.execute(sql, params).fetchall()
        return conn

    def give_back(self, conn: Any) -> None:
        with self.lock:
            self.idle.append(conn)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


def floor_load(pool: FloorPool, threads: int, seconds: float, samples: Samples | None = None) -> Samples:
    """The bare HNSW top-10 with the same vector, k and filters as the API request, one round trip each:
    autocommit, session knobs, vector in binary, the statement prepared by psycopg (after 5 runs)."""

    def one(conn: Any, rng: random.Random) -> int:
        sql, params = pool.query(rng)
        conn.execute(sql, params).fetchall()
        return 200

    return _closed_loop(threads, seconds, one, pool.connect, pool.give_back, samples)


def floor_sql(table: str, *, cast: str = "vector", version: bool = False, exclude: bool = False) -> str:
    """The scan of ``apps.core.hnsw`` without the product's wrapper: tenant (and version), availability,
    the exclusions, ordered by cosine distance, LIMIT k."""
    where = ["tenant_id = %s"] + (["version = %s"] if version else []) + ["available"]
    where += ["item_id <> ALL(%s::bigint[])"] if exclude else []
    return (
        f"SELECT item_id, external_id, embedding::{cast} <=> %b::{cast} AS distance FROM {table} "  # noqa: S608 # nosec B608 - code constants only; values are parameters
        f"WHERE {' AND '.join(where)} ORDER BY distance LIMIT %s"
    )


def warm_search_lru(port: int, queries: list[str], passes: int = 4) -> None:
    """Send every query ``passes`` times from 8 clients, so that each gunicorn worker's query LRU
    most likely holds all of them (a worker misses a query with probability 2**-passes)."""
    paths = [f"/api/v1/search?q={urllib.parse.quote(q)}&k=10" for q in queries] * passes
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if not paths:
                    break
                path = paths.pop()
            conn.request("GET", path, headers=HEADERS)
            conn.getresponse().read()
        conn.close()

    workers = [threading.Thread(target=client, daemon=True) for _ in range(WORKERS * THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(600)


def search_queries() -> list[str]:
    titles: list[str] = []
    movies = ROOT / "data" / "ml-latest-small" / "movies.csv"
    if movies.is_file():
        import csv

        with movies.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                titles.append(row["title"].rsplit(" (", 1)[0])
                if len(titles) >= 380:
                    break
    titles += [f"bench query {n}" for n in range(380 - len(titles))]
    mixed = [
        "玩具总动员",
        "星球大战",
        "爱情 喜剧",
        "功夫熊猫",
        "Toy Story 玩具总动员",
        "Star Wars 星球大战",
        "黑客帝国 The Matrix",
        "泰坦尼克号 Titanic",
        "动画 animation",
        "科幻 sci-fi movie",
        "shoes 鞋子",
        "红色 red dress",
        "咖啡 coffee",
        "旅行 travel guide",
        "音乐 music",
        "足球 football",
        "猫 cat",
        "狗 dog",
        "书 book",
        "电影 film",
    ]
    return [*titles, *mixed]


# --- recall ------------------------------------------------------------------------------------------


def _served_matrix(tenant_id: int, version: int, dim: int, pk_index: dict[int, int]) -> np.ndarray:
    """Every served vector of the version, in item-index order (read once, in binary)."""
    matrix = np.zeros((N_ITEMS, dim), dtype=np.float32)
    with runtime_connection(tenant_id, 40) as db, db.cursor(binary=True) as cur:
        cur.execute(
            f"SELECT item_id, embedding::vector({dim}) FROM modeling_served_vector "  # noqa: S608 # nosec B608 - the dimension is an int
            "WHERE tenant_id = %s AND version = %s",
            [tenant_id, version],
        )
        for pk, vec in cur:
            matrix[pk_index[int(pk)]] = vec.to_numpy()
    return matrix


def recall(
    port: int,
    tenant_id: int,
    inputs: Inputs,
    served: np.ndarray,
    vectors: np.ndarray,
    available: np.ndarray,
    ef_personal: int,
    ef_content: int,
) -> dict[str, Any]:
    """Recall@10 against exact brute force (numpy over all 100k vectors, the same rules):

    - ``personal_api``: the API's ``personal`` answers (seen and unavailable items excluded) against
      the exact top-10 of the model's user vector over the version's served vectors;
    - ``served_index`` (at the personal path's ``ef_search``, and swept) / ``content_index`` (at
      serving's): the bare HNSW indexes, unfiltered, against the exact unfiltered top-10 of the same
      user (model and content) vectors.
    """
    chosen = sorted(inputs.personal)[:RECALL_USERS]
    api_hits, content_hits = [], []
    sweep: dict[int, list[float]] = {ef: [] for ef in sorted({100, 200, 400, ef_personal})}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    strategies: dict[str, int] = {}
    served_sql = (
        f"SELECT external_id FROM modeling_served_vector WHERE tenant_id = %s AND version = %s "  # noqa: S608 # nosec B608 - the dimension is an int
        f"ORDER BY embedding::vector({inputs.dim}) <=> %b::vector({inputs.dim}) LIMIT 10"
    )
    dbs = {ef: runtime_connection(tenant_id, ef) for ef in sweep}
    with runtime_connection(tenant_id, ef_content) as content_db:
        for u in chosen:
            scores = served @ inputs.personal[u]
            masked = scores.copy()
            masked[~available] = -np.inf
            masked[inputs.seen[u]] = -np.inf
            exact = {f"b{i}" for i in np.argpartition(-masked, 10)[:10]}
            conn.request("GET", f"/api/v1/recommendations?user=bu{u}&k=10", headers=HEADERS)
            body = json.loads(conn.getresponse().read())
            strategies[body["strategy"]] = strategies.get(body["strategy"], 0) + 1
            api_hits.append(len(exact & {item["id"] for item in body["items"]}) / 10)
            plain = {f"b{i}" for i in np.argpartition(-scores, 10)[:10]}
            for ef, db in dbs.items():
                rows = db.execute(served_sql, [tenant_id, inputs.version, inputs.personal[u]]).fetchall()
                sweep[ef].append(len(plain & {r[0] for r in rows}) / 10)
            content = vectors @ inputs.content[u]
            plain = {f"b{i}" for i in np.argpartition(-content, 10)[:10]}
            rows = content_db.execute(
                "SELECT external_id FROM catalog_itemvector WHERE tenant_id = %s "
                "ORDER BY embedding <=> %b LIMIT 10",
                [tenant_id, inputs.content[u]],
            ).fetchall()
            content_hits.append(len(plain & {r[0] for r in rows}) / 10)
    for db in dbs.values():
        db.close()
    conn.close()
    return {
        "users": len(chosen),
        "personal_api": round(float(np.mean(api_hits)), 4),
        "served_index": round(float(np.mean(sweep[ef_personal])), 4),
        "served_index_by_ef_search": {str(ef): round(float(np.mean(h)), 4) for ef, h in sweep.items()},
        "content_index": round(float(np.mean(content_hits)), 4),
        "ef_search": {"personal": ef_personal, "content": ef_content},
        "api_strategies": strategies,
    }


def cold_encode_ms(n: int = 30) -> dict[str, Any]:
    """Query encoding without the LRU (fresh texts), in this process, one thread: the cost of a cache miss."""
    from apps.catalog.encoder import get_encoder
    from apps.core.conf import sotto

    encoder = get_encoder(
        None, sotto().encoder_precision, num_threads=sotto().serving_encoder_threads, query_cache_size=0
    )
    encoder.encode_query("warm up")
    times = []
    for i in range(n):
        started = time.perf_counter()
        encoder.encode_query(f"a fresh query about movies number {i}")
        times.append((time.perf_counter() - started) * 1000)
    return {
        "precision": encoder.precision,
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p99_ms": round(float(np.percentile(times, 99)), 2),
    }


# --- main --------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "python": stdlib_platform.python_version(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
    }


STRATEGIES = ("personal", "search", "similar")


def table(result: dict[str, Any]) -> str:
    lines = [
        "| strategy | concurrency | path | p50 ms | p95 ms | p99 ms | req/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in STRATEGIES:
        for level, row in result["strategies"][name].items():
            for path in ("floor", "api"):
                r = row[path]
                label = "bare HNSW floor" if path == "floor" else "API"
                lines.append(
                    f"| {name} | {level[1:]} | {label} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
                    f"{r['rps']} |"
                )
    return "\n".join(lines)


def verdict_lines(result: dict[str, Any]) -> list[str]:
    """The serving check's lines: ``p99 X ms vs floor Y ms = R×`` (c1) and throughput (c8) per strategy."""
    out = []
    for name in STRATEGIES:
        c1 = result["strategies"][name]["c1"]
        out.append(
            f"{name} c1: p99 {c1['api']['p99_ms']} ms vs floor {c1['floor']['p99_ms']} ms = "
            f"{c1['p99_over_floor']}×"
        )
    for name in STRATEGIES:
        c8 = result["strategies"][name].get("c8")
        if c8 is not None:
            out.append(
                f"{name} c8: {c8['api']['rps']} req/s vs floor {c8['floor']['rps']} req/s = "
                f"{c8['rps_over_floor']}× throughput"
            )
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def run(seconds: float) -> dict[str, Any]:
    from apps.catalog.encoder import get_encoder
    from apps.core.conf import sotto
    from apps.serving.hnsw import ef_search
    from apps.serving.ranking import blend_vector
    from apps.serving.selectors import search_user_weight
    from apps.tenancy.selectors import tenant_get
    from apps.tenancy.services import api_key_create, api_key_revoke, tenant_create

    started = time.perf_counter()
    result: dict[str, Any] = {
        "machine": machine(),
        "items": N_ITEMS,
        "users": N_USERS,
        "history_per_user": HISTORY,
    }
    tenant = tenant_get(slug=SLUG) or tenant_create(slug=SLUG, name="serving benchmark", actor="bench")
    tenant_id = int(tenant.id)
    seeds, genres = seed_vectors()
    _say(f"generating {N_ITEMS} items around the {len(seeds)} MovieLens content vectors, {N_USERS} users")
    vectors, categories, available = synthetic_items(seeds, genres)
    histories = user_histories(categories)
    if _loaded(tenant_id):
        _say(f"tenant {SLUG} already holds {N_ITEMS} items and {N_USERS} users: reused")
        result["load"] = {"reused": True}
    else:
        _say(f"loading {N_ITEMS} items and vectors by COPY, then building the HNSW index")
        result["load"] = load(tenant_id, vectors, categories, available)
        _say(f"loaded: {result['load']}; {N_USERS} users x {HISTORY} ratings through events_ingest")
        result["load"]["histories_s"] = ingest_histories(tenant_id, histories)
    result["model"] = ensure_model(tenant_id)
    _say(f"active model: {result['model']}")
    rng = np.random.default_rng(SEED + 2)
    sample = sorted(int(u) for u in rng.choice(N_USERS, size=SAMPLE_USERS, replace=False))
    inputs = user_inputs(tenant_id, sample)
    user_ids = sorted(inputs.personal)
    with runtime_connection(tenant_id, 40) as db:
        pk_index = {
            int(pk): int(ext[1:])
            for pk, ext in db.execute(
                "SELECT id, external_id FROM catalog_item WHERE tenant_id = %s", [tenant_id]
            ).fetchall()
        }
    item_pk = np.zeros(N_ITEMS, dtype=np.int64)
    for pk, i in pk_index.items():
        item_pk[i] = pk
    # each strategy's ef_search as the product sets it: serving's own for content vectors (search),
    # modeling's for a version's served vectors (personal), the catalogue's for similar items
    ef_serving, ef_personal, ef_catalog = (
        ef_search(10),
        sotto().modeling_hnsw_ef_search,
        sotto().catalog_hnsw_ef_search,
    )
    issued = api_key_create(
        tenant=tenant, name=f"bench {time.strftime('%H:%M:%S')}", scopes=["serve"], actor="bench"
    )
    HEADERS["Authorization"] = f"Bearer {issued.raw}"
    queries = search_queries()
    result["search_cold_encode"] = cold_encode_ms()
    encoder = get_encoder(None, sotto().encoder_precision, num_threads=sotto().serving_encoder_threads)
    query_vectors = [encoder.encode_query(" ".join(q.split())) for q in queries]
    alpha = search_user_weight()

    # Each strategy's API request and its floor draw from the same distribution (users, queries, items).
    def personal(r: random.Random) -> tuple[str, str, bytes | None]:
        return "GET", f"/api/v1/recommendations?user=bu{user_ids[r.randrange(len(user_ids))]}&k=10", None

    personal_sql = floor_sql(
        "modeling_served_vector", cast=f"vector({inputs.dim})", version=True, exclude=True
    )

    def personal_floor(r: random.Random) -> tuple[str, list[Any]]:
        u = user_ids[r.randrange(len(user_ids))]
        return personal_sql, [inputs.personal[u], tenant_id, inputs.version, inputs.seen_pks[u], 10]

    def search(r: random.Random) -> tuple[str, str, bytes | None]:
        q = urllib.parse.quote(queries[r.randrange(len(queries))])
        user = f"&user=bu{user_ids[r.randrange(len(user_ids))]}" if r.random() < 0.5 else ""
        return "GET", f"/api/v1/search?q={q}&k=10{user}", None

    search_sql = floor_sql("catalog_itemvector")

    def search_floor(r: random.Random) -> tuple[str, list[Any]]:
        q = query_vectors[r.randrange(len(queries))]
        if r.random() < 0.5:
            q = blend_vector(q, inputs.content[user_ids[r.randrange(len(user_ids))]], alpha)[0]
        return search_sql, [q, tenant_id, 10]

    def similar(r: random.Random) -> tuple[str, str, bytes | None]:
        return "GET", f"/api/v1/items/b{r.randrange(N_ITEMS)}/similar?k=10", None

    similar_sql = floor_sql("catalog_itemvector", exclude=True)

    def similar_floor(r: random.Random) -> tuple[str, list[Any]]:
        i = r.randrange(N_ITEMS)
        return similar_sql, [vectors[i], tenant_id, [int(item_pk[i])], 10]

    loads: dict[str, tuple[Request, Query, int]] = {
        "personal": (personal, personal_floor, ef_personal),
        "search": (search, search_floor, ef_serving),
        "similar": (similar, similar_floor, ef_catalog),
    }
    with Server(ROOT / "var" / "log" / "serving-bench-gunicorn.log") as server:
        _say(
            f"gunicorn on 127.0.0.1:{server.port}; warming up (every search query reaches both workers' LRU)"
        )
        warm_search_lru(server.port, queries)
        for request, _, _ in loads.values():
            http_load(server.port, request, WORKERS * THREADS, 2.0)
            http_load(server.port, request, 1, 1.0)
        _say("recall@10 (API personal answers and the bare indexes against numpy brute force)")
        served = _served_matrix(tenant_id, inputs.version, inputs.dim, pk_index)
        result["recall_at_10_detail"] = recall(
            server.port, tenant_id, inputs, served, vectors, available, ef_personal, ef_serving
        )
        result["recall_at_10"] = result["recall_at_10_detail"]["personal_api"]
        result["strategies"] = {name: {} for name in STRATEGIES}
        for threads in CONCURRENCY:
            level = f"c{threads}"
            _say(
                f"concurrency {threads}: {', '.join(STRATEGIES)}, each beside its floor ({seconds:g} s each, "
                f"in {ROUNDS} interleaved rounds)"
            )
            got = {(name, path): Samples() for name in STRATEGIES for path in ("floor", "api")}
            pools = {name: FloorPool(tenant_id, ef, query) for name, (_, query, ef) in loads.items()}
            for _ in range(ROUNDS):  # a load spike from elsewhere on the box hits every path alike
                for name, (request, _, _) in loads.items():
                    floor_load(pools[name], threads, seconds / ROUNDS, got[(name, "floor")])
                    http_load(server.port, request, threads, seconds / ROUNDS, got[(name, "api")])
            for pool in pools.values():
                pool.close()
            for name in STRATEGIES:
                api, floor = got[(name, "api")].summary(seconds), got[(name, "floor")].summary(seconds)
                result["strategies"][name][level] = {
                    "api": api,
                    "floor": floor,
                    "p99_over_floor": _ratio(api["p99_ms"], floor["p99_ms"]),
                    "p50_over_floor": _ratio(api["p50_ms"], floor["p50_ms"]),
                    "rps_over_floor": _ratio(api["rps"], floor["rps"]),
                }
    api_key_revoke(tenant=tenant, key_id=issued.key.pk, actor="bench")
    goals: dict[str, Any] = {}
    for name in STRATEGIES:
        c1, c8 = result["strategies"][name]["c1"], result["strategies"][name].get("c8")
        goals[name] = {
            "p99_over_floor_c1": c1["p99_over_floor"],
            "p99_goal_met": bool(c1["p99_over_floor"] is not None and c1["p99_over_floor"] <= 1.5),
            "rps_over_floor_c8": None if c8 is None else c8["rps_over_floor"],
            "throughput_goal_met": bool(
                c8 and c8["rps_over_floor"] is not None and c8["rps_over_floor"] >= 0.7
            ),
        }
    detail = result["recall_at_10_detail"]
    goals["recall_goal_met"] = (
        min(detail["personal_api"], detail["served_index"], detail["content_index"]) >= 0.95
    )
    result["goals"] = goals
    result["ef_search"] = {"personal": ef_personal, "search": ef_serving, "similar": ef_catalog}
    result["seconds_per_load"] = seconds
    result["total_s"] = round(time.perf_counter() - started, 1)
    result["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    return result


def child(out: Path, seconds: float) -> None:
    _setup_django()
    _say(f"database {BENCH_DB}: create on first use, migrate")
    ensure_database()
    result = run(seconds)
    (out / "serving.json").write_text(json.dumps(result, indent=2))


def main(out_dir: Path | str = ROOT / "var" / "bench", seconds: float = 10.0) -> dict[str, Any]:
    """Run the benchmark in a child process bound to the bench database; print and return its result."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.serving_bench",
            "--child",
            "--out",
            str(out),
            "--seconds",
            str(seconds),
        ],
        cwd=ROOT,
        env=_child_env(),
        check=True,
    )
    result: dict[str, Any] = json.loads((out / "serving.json").read_text())
    print(table(result))
    detail = result["recall_at_10_detail"]
    print(
        f"recall@10: personal API {detail['personal_api']}, served-vector index {detail['served_index']} "
        f"(by ef_search: {detail['served_index_by_ef_search']}), content index {detail['content_index']} "
        f"(ef_search {detail['ef_search']})"
    )
    for line in verdict_lines(result):
        print(line)
    load = result["machine"]
    print(
        f"load average (1 min) {load['load_average_1m_at_start']} at start, {load['load_average_1m_at_end']} at end "
        f"on {load['cpu_count']} cores"
    )
    print(f"wrote {out / 'serving.json'} in {result['total_s']} s")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load (default 10)")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.out, args.seconds)
    else:
        main(args.out, args.seconds)
