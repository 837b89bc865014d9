from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Sotto core"

    def ready(self) -> None:
        # Registers the system check that builds the typed settings (apps.core.conf).
        from apps.core import conf  # noqa: F401
