"""In-process latency buffer, flushed to PostgreSQL by a background thread: nothing on the request path
writes to the database.

``record()`` adds one observation to a dict keyed by (tenant, minute, endpoint class, status class)
under a lock: a bisect and a few dict operations (about 2 µs). A daemon thread started lazily in
each process (so gunicorn and Celery prefork children each get their own after ``fork``) swaps the
buffer out every ``SLO_FLUSH_EVERY_S`` seconds and UPSERTs it, adding bucket counts to the minute
row and to the lifetime row; an ``atexit`` hook flushes what is left when the process exits
normally. A failed flush (database down, test database blocked) puts the counts back, dropping
minutes older than ``SLO_MAX_BUFFER_AGE_S`` so a long outage cannot grow the buffer without bound.
At most one flush interval of observations is lost if a process is killed hard.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from apps.slo import buckets
from apps.slo.endpoints import status_class

logger = logging.getLogger(__name__)

# (tenant_id, minute start as epoch seconds, endpoint class, status class)
Key = tuple[int, int, str, str]
# (queue, state)
TaskKey = tuple[str, str]


@dataclass
class Cell:
    counts: list[int] = field(default_factory=buckets.empty)
    sum_ms: float = 0.0

    def add(self, index: int, duration_ms: float) -> None:
        self.counts[index] += 1
        self.sum_ms += duration_ms

    def merge(self, other: Cell) -> None:
        buckets.add_into(self.counts, other.counts)
        self.sum_ms += other.sum_ms

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass
class Batch:
    requests: dict[Key, Cell]
    tasks: dict[TaskKey, Cell]
    database: str = ""  # the database these observations belong to (see ``_database_name``)

    def __bool__(self) -> bool:
        return bool(self.requests or self.tasks)


class Recorder:
    """One per process (``default_recorder()``); tests build their own with an injected ``writer``."""

    def __init__(
        self,
        *,
        writer: Callable[[Batch], None] | None = None,
        flush_every_s: float | None = None,
        max_age_s: float | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._writer = writer
        self._flush_every_s = flush_every_s
        self._max_age_s = max_age_s
        self.wall = wall
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._requests: dict[Key, Cell] = {}
        self._tasks: dict[TaskKey, Cell] = {}
        self._pid = os.getpid()
        self._database = ""
        self._started = False
        self._stop = threading.Event()
        self.last_error: str | None = None

    # --- the hot path -------------------------------------------------------------------------

    def record(
        self, *, tenant_id: int, endpoint_class: str, status: int, duration_ms: float, at: float | None = None
    ) -> None:
        when = self.wall() if at is None else at
        key = (tenant_id, int(when // 60) * 60, endpoint_class, status_class(status))
        index = buckets.bucket_index(duration_ms)
        self._ensure_process()
        with self._lock:
            cell = self._requests.get(key)
            if cell is None:
                if not self._requests and not self._tasks:
                    self._database = _database_name()
                cell = self._requests[key] = Cell()
            cell.add(index, duration_ms)
        if not self._started:
            self._start_thread()

    def record_task(self, *, queue: str, state: str, duration_ms: float) -> None:
        index = buckets.bucket_index(duration_ms)
        self._ensure_process()
        with self._lock:
            cell = self._tasks.get((queue, state))
            if cell is None:
                if not self._requests and not self._tasks:
                    self._database = _database_name()
                cell = self._tasks[(queue, state)] = Cell()
            cell.add(index, duration_ms)
        if not self._started:
            self._start_thread()

    # --- flushing -----------------------------------------------------------------------------

    def pending(self) -> Batch:
        """A copy of what is buffered (tests and the benchmark look; nothing is taken out)."""
        with self._lock:
            return Batch(
                requests={k: Cell(list(v.counts), v.sum_ms) for k, v in self._requests.items()},
                tasks={k: Cell(list(v.counts), v.sum_ms) for k, v in self._tasks.items()},
                database=self._database,
            )

    def has_pending(self) -> bool:
        with self._lock:
            return bool(self._requests or self._tasks)

    def take(self) -> Batch:
        with self._lock:
            batch = Batch(self._requests, self._tasks, self._database)
            self._requests, self._tasks = {}, {}
        return batch

    def put_back(self, batch: Batch) -> None:
        oldest = self.wall() - self._max_age()
        with self._lock:
            if not self._requests and not self._tasks:
                self._database = batch.database
            for key, cell in batch.requests.items():
                if key[1] < oldest:
                    continue
                self._requests.setdefault(key, Cell()).merge(cell)
            for task_key, cell in batch.tasks.items():
                self._tasks.setdefault(task_key, Cell()).merge(cell)

    def flush(self, *, unless_stopped: bool = False) -> int:
        """Write everything buffered; returns the number of observations written (0 on failure)."""
        with self._flush_lock:
            if unless_stopped and self._stop.is_set():
                return 0
            batch = self.take()
            if not batch:
                return 0
            if self._writer is None and batch.database != _database_name():
                # The process switched databases since these were recorded (a test run's database
                # was torn down and the settings point elsewhere): they belong nowhere else.
                logger.debug("slo: dropping observations recorded against database %r", batch.database)
                return 0
            try:
                (self._writer or _database_writer)(batch)
            except Exception as exc:  # keep the counts for the next try; never break the caller
                error = f"{type(exc).__name__}: {exc}"
                if error != self.last_error:  # one warning per distinct failure, not one per tick
                    logger.warning("slo flush failed, will retry: %s", error)
                self.last_error = error
                self.put_back(batch)
                return 0
            self.last_error = None
            return sum(c.total for c in batch.requests.values()) + sum(c.total for c in batch.tasks.values())

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self, *, flush: bool = True) -> None:
        """Stop the background thread and wait for a flush it may be in the middle of; then (with
        ``flush``) write what is left from the calling thread. A test harness calls this before
        dropping its database, so no flusher connection is open at that moment."""
        self._stop.set()
        with self._flush_lock:
            pass
        if flush:
            self.flush()

    def _max_age(self) -> float:
        if self._max_age_s is not None:
            return self._max_age_s
        from apps.core.conf import sotto

        return sotto().slo_max_buffer_age_s

    def _interval(self) -> float:
        if self._flush_every_s is not None:
            return self._flush_every_s
        from apps.core.conf import sotto

        return sotto().slo_flush_every_s

    def _ensure_process(self) -> None:
        # After fork (gunicorn workers, Celery prefork children) the parent's buffer and thread
        # are not ours: start empty, with a thread of our own.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._flush_lock = threading.Lock()
            self._requests, self._tasks = {}, {}
            self._started = False
            self._stop = threading.Event()

    def _start_thread(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            interval = self._interval()
            if interval <= 0:
                return  # no background thread: whoever owns this recorder calls flush()
            thread = threading.Thread(target=self._run, args=(interval,), name="slo-flusher", daemon=True)
        thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.flush(unless_stopped=True)
            finally:
                _close_thread_connections()


def _database_name() -> str:
    from django.conf import settings

    return str(settings.DATABASES["default"].get("NAME", ""))


def _close_thread_connections() -> None:
    # The flusher thread must not keep a connection open between flushes: it would pin the
    # database (a test database could not be dropped) and count against the server's limit.
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        conn.close()


def _database_writer(batch: Batch) -> None:
    from apps.slo.services import slo_histograms_write

    slo_histograms_write(batch=batch)


_default: Recorder | None = None
_default_lock = threading.Lock()


def default_recorder() -> Recorder:
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Recorder()
                atexit.register(_flush_at_exit)
    return _default


def _flush_at_exit() -> None:
    recorder = _default
    if recorder is None or recorder._pid != os.getpid():
        return
    recorder.stop()
    if recorder.has_pending():
        recorder.flush()
