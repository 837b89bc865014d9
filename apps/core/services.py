"""Platform state changes that belong to no tenant."""

from __future__ import annotations

import socket

from django.utils import timezone

from apps.core.models import WorkerHeartbeat


def worker_heartbeat_record(*, queue: str, token: str) -> WorkerHeartbeat:
    heartbeat, _ = WorkerHeartbeat.objects.update_or_create(
        queue=queue, defaults={"token": token, "hostname": socket.gethostname(), "seen_at": timezone.now()}
    )
    return heartbeat
