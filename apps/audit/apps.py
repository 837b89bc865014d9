from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "apps.audit"
    label = "audit"
    verbose_name = "Tamper-evident audit log"

    def ready(self) -> None:
        from apps.audit import signals  # noqa: F401 - connects the admin sign-in handlers
        from apps.core.roles import register_append_only

        # The runtime role keeps only INSERT and SELECT on these (re-granted after every migrate).
        register_append_only("audit_auditevent")
        register_append_only("audit_auditcheckpoint")
