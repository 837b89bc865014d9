"""Worker liveness: operators (and the test suite) queue a ping and watch the heartbeat row change."""

from __future__ import annotations

from celery import shared_task

from apps.core.services import worker_heartbeat_record


@shared_task(name="sotto.core.worker_ping", acks_late=True, soft_time_limit=30, time_limit=60)
def worker_ping(queue: str, token: str) -> None:
    worker_heartbeat_record(queue=queue, token=token)
