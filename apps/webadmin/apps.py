from django.apps import AppConfig


class WebadminConfig(AppConfig):
    name = "apps.webadmin"
    label = "webadmin"
    verbose_name = "Sotto web admin"

    def ready(self) -> None:
        from apps.webadmin import throttle

        throttle.connect_signals()
