"""Celery task counts and durations by queue, from the workers' own signals."""

from __future__ import annotations

import types
import uuid

import pytest
from django.db import connection

from apps.slo import celery_signals
from apps.slo.recorder import Recorder
from tests.support import wait_for


def fake_task(routing_key):
    return types.SimpleNamespace(request=types.SimpleNamespace(delivery_info={"routing_key": routing_key}))


def test_prerun_and_postrun_record_one_task_under_its_queue_without_the_prefix(monkeypatch, settings):
    rec = Recorder(flush_every_s=0)
    monkeypatch.setattr(celery_signals, "default_recorder", lambda: rec)
    settings.SOTTO = {**settings.SOTTO, "QUEUE_PREFIX": "t123."}
    celery_signals.on_prerun(task_id="a")
    celery_signals.on_postrun(task_id="a", task=fake_task("t123.encode"), state="SUCCESS")
    celery_signals.on_prerun(task_id="b")
    celery_signals.on_postrun(task_id="b", task=fake_task("t123.encode"), state="FAILURE")
    celery_signals.on_postrun(task_id="never-started", task=fake_task("t123.encode"), state="SUCCESS")
    assert {k: c.total for k, c in rec.pending().tasks.items()} == {
        ("encode", "success"): 1,
        ("encode", "failure"): 1,
    }


def _task_total(queue):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(SUM(total), 0) FROM slo_tasktotal WHERE queue = %s AND state = 'success'",
            [queue],
        )
        return int(cursor.fetchone()[0])


@pytest.mark.worker
def test_a_real_worker_reports_its_tasks_by_queue(live_db, celery_worker_proc):
    from django.conf import settings

    from apps.core.models import WorkerHeartbeat
    from apps.core.tasks import worker_ping
    from apps.slo.tasks import evaluate_alerts

    queue = f"{settings.SOTTO['QUEUE_PREFIX']}default"
    before = _task_total("default")
    token = uuid.uuid4().hex
    worker_ping.apply_async(args=[queue, token], queue=queue)
    wait_for(lambda: WorkerHeartbeat.objects.filter(queue=queue, token=token).exists(), timeout=60)
    # the beat task flushes the worker's own buffer first, so the ping is in the table right after it
    evaluate_alerts.apply_async(queue=queue)
    wait_for(
        lambda: _task_total("default") > before,
        timeout=60,
        message=f"no task totals; worker log:\n{celery_worker_proc.log_path.read_text()[-3000:]}",
    )
