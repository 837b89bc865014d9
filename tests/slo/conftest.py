"""SLO test harness: probe endpoints at each endpoint class's URL, an injected request timer and
wall clock, and a helper that writes known latency distributions at chosen times.

Nothing here sleeps: durations come from ``StepTimer`` and times from explicit timestamps.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.slo.recorder import Recorder
from tests.slo.timeline import StepTimer


@pytest.fixture
def step_timer(monkeypatch: pytest.MonkeyPatch) -> StepTimer:
    from apps.slo import middleware

    timer = StepTimer()
    monkeypatch.setattr(middleware, "timer", timer)
    return timer


@pytest.fixture
def probe_urls(settings: Any) -> None:
    """Serve the probe endpoints (tests/slo/urls.py) in front of the real URLconf."""
    settings.ROOT_URLCONF = "tests.slo.urls"


@pytest.fixture(scope="session", autouse=True)
def _stop_flusher_before_the_database_goes(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Torn down before ``django_db_setup``: no flusher connection may be open when the test
    database is dropped."""
    yield
    from apps.slo.recorder import default_recorder

    with django_db_blocker.unblock():
        default_recorder().shutdown(flush=True)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """The process's own recorder, emptied before and after (no background thread in the way of asserts)."""
    from apps.slo.recorder import default_recorder

    rec = default_recorder()
    rec.flush()
    yield rec
    rec.flush()


@pytest.fixture
def writer() -> Recorder:
    """A private recorder for writing distributions at chosen times; flushed explicitly."""
    return Recorder(flush_every_s=0)


@pytest.fixture
def now() -> datetime:
    """A fixed 'now' on a minute boundary plus 30 s, a little in the past so no live minute is involved."""
    return (timezone.now() - timedelta(minutes=5)).replace(second=30, microsecond=0)


@pytest.fixture
def audit_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every ``apps.core.audit.record`` call, still forwarded to the real audit chain."""
    from apps.core import audit

    calls: list[dict[str, Any]] = []
    real = audit.record

    def spy(**kwargs: Any) -> None:
        calls.append(kwargs)
        real(**kwargs)

    monkeypatch.setattr(audit, "record", spy)
    return calls
