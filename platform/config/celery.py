"""The Celery application; every beat schedule lives in config.schedules."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

app = Celery("sotto")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _load_schedules(sender: Celery, **_: object) -> None:
    from config.schedules import beat_schedule

    sender.conf.beat_schedule = beat_schedule()
