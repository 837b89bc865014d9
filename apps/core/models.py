"""Platform-level rows (no tenant): worker heartbeats, which the operator's health page shows."""

from __future__ import annotations

from django.db import models


class WorkerHeartbeat(models.Model):
    queue = models.CharField(max_length=64, unique=True)
    token = models.CharField(max_length=64)
    hostname = models.CharField(max_length=255)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.queue}@{self.hostname}"
