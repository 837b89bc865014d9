"""SLO benchmark: what measuring costs per request, and whether a flooding tenant hurts another.

1. **Middleware overhead**: the SLO middleware around a no-op view versus the no-op view alone,
   in process (median of rounds of 20 000 calls), with the access log off and on (JSON lines to
   /dev/null). This isolates our cost; an HTTP A/B would drown 10 µs in network noise.
2. **Noisy neighbour**: a real gunicorn (2 workers x 4 threads, gthread) on a free loopback port,
   against a database of its own (``sotto_bench_slo``, created and migrated on first use so the
   shared dev database is never touched). Tenant *noisy* floods at 10x its per-key limit while
   tenant *quiet* sends its normal load (half its limit); a baseline tenant sends the same load
   alone, in rounds interleaved with the flood rounds.
   Both tenants' p99 are reported client-side (round trip) and server-side (from the SLO
   histograms the gunicorn workers flushed; the final flush happens at worker exit), and the
   server-side count is checked against what the client sent. With ``redis-server`` on the
   machine the flood is repeated with the Redis-shared buckets.
3. **Read costs**: status, alert evaluation and a dashboard series for one busy tenant with 28 days
   of synthetic histograms.

    python -m bench.slo_bench [--seconds 20] [--out var/bench]

Writes ``<out>/slo.json`` and prints a table. Every loop is bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.support import ensure_bench_database, free_port

ROOT = Path(__file__).resolve().parents[1]
BENCH_DB = "sotto_bench_slo"
PATH = "/api/v1/tenant"  # a cheap authenticated endpoint (class "other"), so the server is not the bottleneck
WORKERS, THREADS = 2, 4
ROUNDS = 4  # each condition runs in ROUNDS interleaved slices of seconds / ROUNDS

# Noisy tenant: limit 20/s per key, flooding at 10x. Quiet tenant: limit 40/s, sending 20/s.
NOISY_LIMIT, NOISY_RATE, NOISY_THREADS = 20.0, 200.0, 4
QUIET_LIMIT, QUIET_RATE, QUIET_THREADS = 40.0, 20.0, 2
# The quiet tenant's objective for this endpoint class: as strict as recommendations.
QUIET_THRESHOLD_MS, QUIET_TARGET = 50.0, 0.99


def _child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "SOTTO_DB_NAME": BENCH_DB,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'platform'}",
            "HF_HUB_OFFLINE": "1",
        }
    )
    env.update(extra)
    return env


def _django() -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "platform")]
    import django

    django.setup()


# --- 1. middleware overhead ------------------------------------------------------------------


def measure_overhead(rounds: int = 7, n: int = 20_000) -> dict[str, float]:
    import logging

    from django.http import HttpResponse
    from django.test import RequestFactory
    from django.urls import resolve

    from apps.core.logging import JsonFormatter, RequestContextFilter
    from apps.slo import middleware
    from apps.slo.recorder import Recorder

    response = HttpResponse(b"{}")

    def view(request: Any) -> HttpResponse:
        return response

    request = RequestFactory().get("/api/v1/recommendations")
    request.resolver_match = resolve(PATH)
    request.sotto_tenant_id = 1  # type: ignore[attr-defined]
    request.sotto_tenant_slug = "bench"  # type: ignore[attr-defined]

    sink = open(os.devnull, "w")  # noqa: SIM115 - closed below
    handler = logging.StreamHandler(sink)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("sotto.access")
    saved = (access.handlers[:], access.propagate, access.level)
    access.handlers, access.propagate = [handler], False
    access.setLevel(logging.INFO)

    def per_call_us(fn: Any) -> float:
        best = []
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(n):
                fn(request)
            best.append((time.perf_counter() - started) / n * 1e6)
        return statistics.median(best)

    try:
        recorder = Recorder(writer=lambda batch: None, flush_every_s=0)
        measured = middleware.SloMiddleware(view, recorder=recorder)
        measured.access_log = False
        logged = middleware.SloMiddleware(view, recorder=recorder)
        logged.access_log = True
        per_call_us(view)  # warm-up
        base = per_call_us(view)
        without_log = per_call_us(measured)
        with_log = per_call_us(logged)
        started = time.perf_counter()
        for i in range(n):
            recorder.record(tenant_id=1, endpoint_class="recommend", status=200, duration_ms=float(i % 300))
        record_only = (time.perf_counter() - started) / n * 1e6
    finally:
        access.handlers, access.propagate, access.level = saved
        sink.close()
    return {
        "view_alone_us": round(base, 2),
        "measure_us": round(without_log - base, 2),
        "measure_and_access_log_us": round(with_log - base, 2),
        "recorder_record_us": round(record_only, 2),
    }


# --- 2. noisy neighbour ----------------------------------------------------------------------


def ensure_database() -> None:
    """Create (first run) and migrate the bench's own database, as the owner role."""
    ensure_bench_database(BENCH_DB)


@dataclass
class Persona:
    slug: str
    tenant_id: int
    key: str


def make_persona(role: str, limit: float) -> Persona:
    from apps.core.tenant_db import tenant_context
    from apps.tenancy.models import ApiKey
    from apps.tenancy.services import api_key_create, tenant_create

    tenant = tenant_create(slug=f"bench-{role}-{uuid.uuid4().hex[:8]}", actor="bench")
    issued = api_key_create(tenant=tenant, name="bench", scopes=["serve"], actor="bench")
    with tenant_context(tenant.id):
        ApiKey.objects.filter(pk=issued.key.pk).update(rate_limit_per_s=limit)
    if role.startswith("quiet"):
        from apps.slo.services import slo_objective_set

        slo_objective_set(
            tenant_id=tenant.id,
            endpoint_class="other",
            latency_threshold_ms=QUIET_THRESHOLD_MS,
            latency_target=QUIET_TARGET,
            availability_target=0.999,
            actor="bench",
        )
    return Persona(slug=tenant.slug, tenant_id=tenant.id, key=issued.raw)


class Server:
    def __init__(self, log: Path, **env: str) -> None:
        self.port = free_port()
        self.log = log
        self.env = _child_env(SOTTO_SLO_FLUSH_EVERY_S="1", **env)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        handle = self.log.open("wb")
        self.proc = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "gunicorn"),
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
                "10",
                "--graceful-timeout",
                "20",
            ],
            cwd=ROOT,
            env=self.env,
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
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start; see {self.log}")
            time.sleep(0.3)
        return self

    def warm(self, key: str) -> None:
        """Authenticated requests from as many connections as the server has threads, so every worker
        thread has imported the API path and opened its database connection before anything is measured."""

        def run() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            for _ in range(40):
                conn.request("GET", PATH, headers={"Authorization": f"Bearer {key}"})
                conn.getresponse().read()
            conn.close()

        threads = [threading.Thread(target=run) for _ in range(WORKERS * THREADS * 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)  # graceful: each worker flushes its buffer at exit
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Load:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int, ms: float) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == 200:
                self.latencies_ms.append(ms)

    def summary(self, seconds: float) -> dict[str, Any]:
        ok = sorted(self.latencies_ms)

        def q(p: float) -> float | None:
            return round(ok[min(len(ok) - 1, int(p * len(ok)))], 2) if ok else None

        sent = sum(self.statuses.values())
        return {
            "sent": sent,
            "sent_per_s": round(sent / seconds, 1),
            "ok_per_s": round(self.statuses.get(200, 0) / seconds, 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "client_errors": self.errors,
            "client_p50_ms": q(0.50),
            "client_p99_ms": q(0.99),
            "client_max_ms": round(ok[-1], 2) if ok else None,
        }


def drive(
    port: int, key: str, rate: float, threads: int, seconds: float, load: Load
) -> list[threading.Thread]:
    """Open-loop: each thread sends at rate/threads on its own keep-alive connection until the deadline."""
    deadline = time.monotonic() + seconds
    interval = threads / rate
    headers = {"Authorization": f"Bearer {key}"}

    def run(offset: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        next_at = time.monotonic() + offset
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if next_at > now:
                time.sleep(next_at - now)
            elif now - next_at > 1.0:
                next_at = now  # fell far behind: do not burst to catch up
            next_at += interval
            started = time.perf_counter()
            try:
                conn.request("GET", PATH, headers=headers)
                response = conn.getresponse()
                response.read()
                load.add(response.status, (time.perf_counter() - started) * 1000.0)
            except (OSError, http.client.HTTPException):
                with load.lock:
                    load.errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()

    workers = [
        threading.Thread(target=run, args=(i * interval / threads,), daemon=True) for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    return workers


def run_phase(
    port: int, quiet: Persona, quiet_load: Load, noisy: Persona | None, noisy_load: Load, seconds: float
) -> None:
    threads = drive(port, quiet.key, QUIET_RATE, QUIET_THREADS, seconds, quiet_load)
    if noisy is not None:
        threads += drive(port, noisy.key, NOISY_RATE, NOISY_THREADS, seconds, noisy_load)
    for thread in threads:
        thread.join(seconds + 30)


def server_side(persona: Persona) -> dict[str, Any]:
    from apps.slo.selectors import slo_status_for_tenant

    status = slo_status_for_tenant(tenant_id=persona.tenant_id).classes["other"]
    hour = status.windows["1h"]
    return {
        "server_requests": hour.requests,
        "server_throttled": hour.throttled,
        "server_p50_ms": None if hour.p50_ms is None else round(hour.p50_ms, 2),
        "server_p99_ms": None if hour.p99_ms is None else round(hour.p99_ms, 2),
        "server_share_within_objective": None if hour.share_good is None else round(hour.share_good, 4),
        "objective": f"{status.objective.latency_target:.0%} within {status.objective.latency_threshold_ms:g} ms",
        "meets_objective": hour.share_good is not None and hour.share_good >= status.objective.latency_target,
    }


def noisy_neighbour(out_dir: Path, seconds: float, redis_url: str | None) -> dict[str, Any]:
    ensure_database()
    load_before = [round(x, 2) for x in os.getloadavg()]
    variants: list[tuple[str, dict[str, str]]] = [("per-process buckets", {})]
    if redis_url:
        variants.append(("Redis-shared buckets", {"SOTTO_RATE_LIMIT_REDIS_URL": redis_url}))
    phases: list[dict[str, Any]] = []
    for label, env in variants:
        solo = make_persona("quiet-solo", QUIET_LIMIT)
        quiet = make_persona("quiet", QUIET_LIMIT)
        noisy = make_persona("noisy", NOISY_LIMIT)
        log = out_dir / f"slo-gunicorn-{label.split()[0].lower()}.log"
        warmup = make_persona("warmup", 100_000.0)
        solo_load, quiet_load, noisy_load = Load(), Load(), Load()
        with Server(log, **env) as server:
            server.warm(warmup.key)
            # Alternate quiet-alone and flood rounds, so drifting load from other work on the
            # machine hits both conditions alike.
            for _ in range(ROUNDS):
                run_phase(server.port, solo, solo_load, None, Load(), seconds / ROUNDS)
                run_phase(server.port, quiet, quiet_load, noisy, noisy_load, seconds / ROUNDS)
        # gunicorn has exited: every worker flushed its buffer on the way out
        rows = [
            ("quiet alone", solo, solo_load),
            ("quiet during flood", quiet, quiet_load),
            ("noisy (10x its limit)", noisy, noisy_load),
        ]
        for name, persona, load in rows:
            row = {"buckets": label, "tenant": name, **load.summary(seconds), **server_side(persona)}
            row["server_counted_every_request"] = row["server_requests"] == row["sent"]
            phases.append(row)
    return {
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "gunicorn": f"{WORKERS} workers x {THREADS} threads (gthread)",
        "path": PATH,
        "seconds_per_phase": seconds,
        "rounds": ROUNDS,
        "noisy": {"limit_per_s": NOISY_LIMIT, "offered_per_s": NOISY_RATE},
        "quiet": {
            "limit_per_s": QUIET_LIMIT,
            "offered_per_s": QUIET_RATE,
            "objective": f"{QUIET_TARGET:.0%} within {QUIET_THRESHOLD_MS:g} ms",
        },
        "rows": phases,
    }


# --- 3. read costs ---------------------------------------------------------------------------


def read_costs() -> dict[str, Any]:
    """Status, alert evaluation and a dashboard series for one busy tenant: 28 days of synthetic
    histograms (4 classes x 2 status classes; 8 h of minute rows, hour rows before), 10 occupied
    buckets per row. Best of 3 after a warm-up call."""
    import random
    from datetime import timedelta

    from django.db import connection, transaction
    from django.utils import timezone

    from apps.core.tenant_db import activate_tenant
    from apps.slo import buckets
    from apps.slo.selectors import slo_status_for_tenant, slo_timeseries
    from apps.slo.services import slo_alerts_evaluate
    from apps.tenancy.services import tenant_create

    tenant = tenant_create(slug=f"bench-busy-{uuid.uuid4().hex[:8]}", actor="bench")
    now = timezone.now().replace(second=0, microsecond=0)
    rng = random.Random(0)

    def counts() -> list[int]:
        c = buckets.empty()
        for _ in range(10):
            c[rng.randrange(10, 40)] += rng.randrange(1, 100)
        return c

    rows = []
    for cls in ("recommend", "search", "ingest", "other"):
        for status_class in ("2xx", "4xx"):
            for m in range(8 * 60):
                c = counts()
                rows.append(
                    (tenant.id, cls, status_class, 60, now - timedelta(minutes=m + 1), c, sum(c), 1.0)
                )
            for h in range(8, 28 * 24):
                c = counts()
                start = (now - timedelta(hours=h + 1)).replace(minute=0)
                rows.append((tenant.id, cls, status_class, 3600, start, c, sum(c), 1.0))
    with transaction.atomic(), connection.cursor() as cursor:
        activate_tenant(tenant.id)
        cursor.executemany(
            "INSERT INTO slo_latencyhistogram (tenant_id, endpoint_class, status_class, width_s, start, counts, total, sum_ms)"
            " VALUES (%s, %s, %s, %s, %s, %s::bigint[], %s, %s) ON CONFLICT DO NOTHING",
            rows,
        )
    calls = {
        "status_1h_24h_28d_ms": lambda: slo_status_for_tenant(tenant_id=tenant.id),
        "alert_evaluation_ms": lambda: slo_alerts_evaluate(tenant_ids=[tenant.id]),
        "series_24h_hourly_ms": lambda: slo_timeseries(
            tenant_id=tenant.id,
            endpoint_class="recommend",
            start=now - timedelta(hours=24),
            end=now,
            step_s=3600,
        ),
    }
    out: dict[str, Any] = {"rows": len(rows)}
    for name, call in calls.items():
        call()
        best = []
        for _ in range(3):
            started = time.perf_counter()
            call()
            best.append(time.perf_counter() - started)
        out[name] = round(min(best) * 1000, 1)
    return out


# --- driver ----------------------------------------------------------------------------------


def redis_take_us(url: str, n: int = 2000) -> float:
    """One shared-bucket decision: a Lua script round trip to a local Redis."""
    from apps.api.throttling import RedisBuckets

    buckets = RedisBuckets(url)
    buckets.take(1, 1e6, 1e6, 0.0)
    started = time.perf_counter()
    for _ in range(n):
        buckets.take(1, 1e6, 1e6, 0.0)
    return round((time.perf_counter() - started) / n * 1e6, 1)


def child(out_file: Path, seconds: float) -> None:
    _django()
    redis_proc, redis_url = None, None
    if shutil.which("redis-server"):
        port = free_port()
        redis_proc = subprocess.Popen(  # nosec B607 - the redis-server that shutil.which just found
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        redis_url = f"redis://127.0.0.1:{port}/0"
        time.sleep(0.5)
    try:
        overhead: dict[str, Any] = measure_overhead()
        overhead["redis_bucket_take_us"] = redis_take_us(redis_url) if redis_url else None
        neighbour = noisy_neighbour(out_file.parent, seconds, redis_url)
        result = {"overhead": overhead, "neighbour": neighbour, "reads": read_costs()}
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
    out_file.write_text(json.dumps(result, indent=2))


def machine() -> dict[str, Any]:
    import platform

    return {"cpu_count": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}


def print_table(result: dict[str, Any]) -> None:
    r = result["reads"]
    print(
        f"reads for a busy tenant ({r['rows']} histogram rows over 28 d): status {r['status_1h_24h_28d_ms']} ms, "
        f"alert evaluation {r['alert_evaluation_ms']} ms, 24 h hourly series {r['series_24h_hourly_ms']} ms"
    )
    o = result["overhead"]
    print(
        f"middleware overhead per request: {o['measure_us']} µs measuring, "
        f"{o['measure_and_access_log_us']} µs with the access log (record() alone {o['recorder_record_us']} µs); "
        f"a Redis-shared bucket adds {o['redis_bucket_take_us']} µs"
    )
    n = result["neighbour"]
    print(
        f"noisy neighbour: {n['gunicorn']}, {n['seconds_per_phase']:g} s per condition in {ROUNDS} interleaved rounds, "
        f"GET {n['path']}; quiet objective {n['quiet']['objective']}; load average {n['load_average_before']} -> "
        f"{n['load_average_after']} on {os.cpu_count()} CPUs"
    )
    head = f"{'buckets':<22}{'tenant':<24}{'sent/s':>8}{'200/s':>8}{'429':>7}{'cli p50':>9}{'cli p99':>9}{'srv p99':>9}{'good':>8}{'SLO':>5}{'count':>7}"
    print(head)
    print("-" * len(head))
    for r in n["rows"]:
        print(
            f"{r['buckets']:<22}{r['tenant']:<24}{r['sent_per_s']:>8}{r['ok_per_s']:>8}{r['statuses'].get('429', 0):>7}"
            f"{r['client_p50_ms'] or '-':>9}{r['client_p99_ms'] or '-':>9}{r['server_p99_ms'] or '-':>9}"
            f"{r['server_share_within_objective'] or '-':>8}{'ok' if r['meets_objective'] else 'MISS':>5}"
            f"{'ok' if r['server_counted_every_request'] else 'OFF':>7}"
        )


def main(out_dir: Path, seconds: float = 20.0) -> dict[str, Any]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / "slo.child.json"
    subprocess.run(
        [sys.executable, "-m", "bench.slo_bench", "--child", str(raw), "--seconds", str(seconds)],
        cwd=ROOT,
        env=_child_env(),
        check=True,
    )
    result = {"machine": machine(), **json.loads(raw.read_text())}
    raw.unlink()
    (out_dir / "slo.json").write_text(json.dumps(result, indent=2))
    print_table(result)
    print(f"wrote {out_dir / 'slo.json'}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.seconds)
    else:
        main(args.out, args.seconds)
