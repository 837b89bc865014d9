from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "apps.demo"
    label = "demo"
    verbose_name = "Sotto demo: `manage.py demo` sets up the product on the embedded default"
