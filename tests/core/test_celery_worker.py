"""A task goes through the real broker to a real worker process and changes the real database."""

import uuid

import pytest

from apps.core.models import WorkerHeartbeat
from tests.support import wait_for


@pytest.mark.worker
def test_a_task_runs_end_to_end_through_the_real_broker(live_db, celery_worker_proc):
    from django.conf import settings

    from apps.core.tasks import worker_ping

    queue = f"{settings.SOTTO['QUEUE_PREFIX']}default"
    token = uuid.uuid4().hex
    worker_ping.apply_async(args=[queue, token], queue=queue)
    beat = wait_for(
        lambda: WorkerHeartbeat.objects.filter(queue=queue, token=token).first(),
        timeout=60,
        message=f"worker never ran the task; log:\n{celery_worker_proc.log_path.read_text()[-2000:]}",
    )
    assert beat.hostname
