from django.apps import AppConfig


class ModelingConfig(AppConfig):
    name = "apps.modeling"
    label = "modeling"
    verbose_name = "Modeling: DP training, privacy ledger, model versions, served vectors"

    def ready(self) -> None:
        from apps.core.roles import register_append_only
        from apps.modeling import hooks

        # The runtime role keeps only INSERT and SELECT on the ledger (re-granted after every migrate).
        register_append_only("modeling_ledgerentry")
        register_append_only("modeling_ledgermechanism")
        hooks.register()
