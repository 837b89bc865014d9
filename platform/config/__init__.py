"""Sotto's Django project package (settings, urls, Celery app, embedded database bootstrap)."""

from config.celery import app as celery_app

__all__ = ["celery_app"]
