from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "apps.catalog"
    label = "catalog"
    verbose_name = "Catalogue and item encoding"

    def ready(self) -> None:
        # Registers the system checks and the per-tenant vector partition hook.
        from apps.catalog import checks, partitions  # noqa: F401
