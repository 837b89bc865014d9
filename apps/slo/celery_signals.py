"""Celery task counts and durations by queue and final state, recorded in the worker process.

``task_prerun`` notes a monotonic start time per task id; ``task_postrun`` records the duration
into the process's recorder, whose background thread flushes it to ``slo_tasktotal``. The queue
label is the delivery routing key without this deployment's ``SOTTO_QUEUE_PREFIX``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from apps.slo.recorder import default_recorder

_started: dict[str, float] = {}
_lock = threading.Lock()
_MAX_IN_FLIGHT = 10_000  # a task whose postrun never comes must not grow this forever


def queue_of(task: Any) -> str:
    from apps.core.conf import sotto

    info = getattr(getattr(task, "request", None), "delivery_info", None) or {}
    queue = str(info.get("routing_key") or info.get("queue") or "unknown")
    prefix = sotto().queue_prefix
    return queue[len(prefix) :] if prefix and queue.startswith(prefix) else queue


def on_prerun(task_id: str | None = None, **_: Any) -> None:
    if task_id is None:
        return
    with _lock:
        if len(_started) >= _MAX_IN_FLIGHT:
            _started.clear()
        _started[task_id] = time.perf_counter()


def on_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    with _lock:
        started = _started.pop(task_id or "", None)
    if started is None:
        return
    default_recorder().record_task(
        queue=queue_of(task),
        state=(state or "unknown").lower(),
        duration_ms=(time.perf_counter() - started) * 1000.0,
    )


def on_process_shutdown(**_: Any) -> None:
    # Prefork children leave with os._exit (no atexit): flush what this child measured.
    default_recorder().flush()


def connect() -> None:
    from celery.signals import task_postrun, task_prerun, worker_process_shutdown, worker_shutdown

    task_prerun.connect(on_prerun, weak=False, dispatch_uid="sotto.slo.prerun")
    task_postrun.connect(on_postrun, weak=False, dispatch_uid="sotto.slo.postrun")
    worker_process_shutdown.connect(
        on_process_shutdown, weak=False, dispatch_uid="sotto.slo.process_shutdown"
    )
    worker_shutdown.connect(on_process_shutdown, weak=False, dispatch_uid="sotto.slo.shutdown")
