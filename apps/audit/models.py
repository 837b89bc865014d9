"""The audit chain as stored: one row per sealed event, one row per signed checkpoint.

Both tables are append-only in the database itself (triggers refuse UPDATE, DELETE and
TRUNCATE, even for the owner; the runtime role holds only INSERT and SELECT), under forced
row-level security, and protect their tenant: a tenant with history is suspended, never deleted.
Each row holds exactly the fields that are hashed or signed (``apps.audit.chain``), including
the tenant slug, so a row can be re-verified without trusting any other table.
"""

from __future__ import annotations

from django.db import models

from apps.tenancy.models import Tenant


class AuditEvent(models.Model):
    """One sealed event of a tenant's chain (``tenant`` NULL: the platform chain)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    tenant_slug = models.CharField(max_length=63, null=True, blank=True)  # noqa: DJ001 - NULL: platform chain, hashed as JSON null
    sequence = models.PositiveBigIntegerField()
    time = models.DateTimeField()
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=100)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["tenant_id", "sequence"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "sequence"], name="audit_event_one_per_sequence", nulls_distinct=False
            ),
            models.CheckConstraint(condition=models.Q(sequence__gte=1), name="audit_event_sequence_positive"),
        ]
        indexes = [models.Index(fields=["tenant", "time"], name="audit_event_tenant_time")]

    def __str__(self) -> str:
        return f"{self.tenant_slug or '<platform>'}#{self.sequence} {self.action}"


class AuditCheckpoint(models.Model):
    """A signed chain head (periodic, or the one signed for an export); mirrored to the sink."""

    class Kind(models.TextChoices):
        PERIODIC = "periodic"
        EXPORT = "export"

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    tenant_slug = models.CharField(max_length=63, null=True, blank=True)  # noqa: DJ001 - NULL: platform chain, hashed as JSON null
    kind = models.CharField(max_length=16, choices=Kind.choices)
    sequence = models.PositiveBigIntegerField()
    head_hash = models.CharField(max_length=64)
    signed_at = models.CharField(max_length=27)  # the exact signed text, YYYY-MM-DDTHH:MM:SS.ffffffZ
    first_sequence = models.PositiveBigIntegerField(null=True, blank=True)
    first_prev_hash = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 - NULL: periodic checkpoints
    key_id = models.CharField(max_length=16)
    signature = models.CharField(max_length=88)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant_id", "sequence", "signed_at"]
        indexes = [models.Index(fields=["tenant", "sequence"], name="audit_checkpoint_tenant_seq")]

    def __str__(self) -> str:
        return f"{self.tenant_slug or '<platform>'}@{self.sequence} ({self.kind})"
