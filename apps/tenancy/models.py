"""Tenants, who may act for them (memberships), and how client apps authenticate (API keys)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models


class Tenant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        SUSPENDED = "suspended"

    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    settings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class TenantOwned(models.Model):
    """Base for every tenant-owned table: the ``tenant_id`` column that RLS policies read."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, db_index=True)

    class Meta:
        abstract = True


class Role(models.TextChoices):
    OWNER = "owner"
    ADMIN = "admin"
    REVIEWER = "reviewer"


class Membership(TenantOwned):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user")]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.tenant_id}:{self.role}"


class Scope(models.TextChoices):
    INGEST = "ingest"
    SERVE = "serve"
    TRAIN = "train"
    AUDIT = "audit"
    ADMIN = "admin"  # tenant settings, privacy budget policy, retraining schedule, model versions


ALL_SCOPES = [scope.value for scope in Scope]


class ApiKey(TenantOwned):
    """A client credential: the secret is shown once; only its SHA-256 is kept."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    scopes: Any = ArrayField(models.CharField(max_length=16, choices=Scope.choices))
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    rate_limit_per_s = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class TenantKey(TenantOwned):
    """One version of one of a tenant's keys, wrapped (AES-256-GCM) under the master key.

    ``purpose`` separates the pseudonym key (HMAC of end-user ids; never rotated, or every
    pseudonym would change) from the encryption key (wraps per-user keys; rotated by
    ``rotate_keys``). ``wrapped`` is erased when a version is retired; see ``apps.tenancy.keyring``.
    """

    class Purpose(models.TextChoices):
        ENCRYPTION = "enc"
        PSEUDONYM = "pseudonym"

    class Status(models.TextChoices):
        ACTIVE = "active"
        RETIRING = "retiring"
        RETIRED = "retired"

    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    wrapped = models.BinaryField(null=True)
    master_key_id = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "purpose", "version"], name="tenantkey_unique_version"),
            models.UniqueConstraint(
                fields=["tenant", "purpose"], condition=models.Q(status="active"), name="tenantkey_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.purpose}:v{self.version}:{self.status}"
