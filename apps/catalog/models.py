"""Catalogue items: the tenant's own content; vectors live in the partitioned table of ``vectors.py``."""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import models

from apps.tenancy.models import TenantOwned


class EncodingStatus(models.TextChoices):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class Item(TenantOwned):
    """One catalogue item, keyed by the tenant's own id (``external_id``).

    ``content_hash`` is the SHA-256 of the text the encoder reads; ``encoded_hash`` is the hash
    of the text whose vector is stored. They differ exactly while a re-encode is due.
    """

    external_id = models.CharField(max_length=200)
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True, default="")
    categories: Any = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    available = models.BooleanField(default=True)
    content_hash = models.CharField(max_length=64)
    encoding_status = models.CharField(
        max_length=8, choices=EncodingStatus.choices, default=EncodingStatus.PENDING
    )
    encoded_hash = models.CharField(max_length=64, blank=True, default="")
    encoding_model = models.CharField(max_length=200, blank=True, default="")
    encoding_truncated = models.BooleanField(default=False)
    encoding_error = models.CharField(max_length=500, blank=True, default="")
    encoding_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "external_id"], name="catalog_item_unique_external_id"),
        ]
        indexes = [models.Index(fields=["tenant", "encoding_status"], name="catalog_item_status_idx")]

    def __str__(self) -> str:
        return f"{self.external_id}: {self.title[:40]}"
