"""Helpers for SLO tests: an injected request timer and known latency distributions at chosen times."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta

from apps.slo.recorder import Recorder


class StepTimer:
    """Stands in for ``time.perf_counter`` in the SLO middleware: each request lasts the next
    queued duration (ms), or ``default_ms`` when the queue is empty."""

    def __init__(self, default_ms: float = 1.0) -> None:
        self.default_ms = default_ms
        self.queue: deque[float] = deque()
        self._calls = itertools.count()
        self._now = 1000.0

    def __call__(self) -> float:
        if next(self._calls) % 2 == 0:  # start of a request
            self._now += 60.0
            return self._now
        duration = self.queue.popleft() if self.queue else self.default_ms
        return self._now + duration / 1000.0


def record(
    rec: Recorder,
    tenant_id: int,
    moment: datetime,
    durations_ms: Iterable[float],
    *,
    cls: str = "recommend",
    status: int = 200,
) -> int:
    n = 0
    for duration in durations_ms:
        rec.record(
            tenant_id=tenant_id,
            endpoint_class=cls,
            status=status,
            duration_ms=duration,
            at=moment.timestamp(),
        )
        n += 1
    return n


def per_minute(
    rec: Recorder,
    tenant_id: int,
    start: datetime,
    minutes: int,
    durations_ms: list[float],
    *,
    cls: str = "recommend",
    status: int = 200,
) -> None:
    """The same distribution in each of ``minutes`` consecutive minutes from ``start``."""
    for m in range(minutes):
        record(rec, tenant_id, start + timedelta(minutes=m, seconds=1), durations_ms, cls=cls, status=status)
