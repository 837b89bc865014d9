from django.apps import AppConfig


class SloConfig(AppConfig):
    name = "apps.slo"
    label = "slo"
    verbose_name = "Latency objectives, measurement and alerts"

    def ready(self) -> None:
        # Celery task timings: the signal handlers only fire inside worker processes.
        from apps.slo import celery_signals

        celery_signals.connect()
