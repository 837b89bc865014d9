"""End users as the tenant's clients know them, minus anything that identifies them.

- ``EndUser``: the pseudonym (HMAC-SHA256 of the client's user id under the tenant's pseudonym
  key) and the user's own key, wrapped under a tenant encryption key version.
- ``UserAttribute``: one encrypted attribute; ``name_tag`` is an HMAC of the attribute name under
  a key derived from the user's key, the ciphertext holds name and value (AES-256-GCM, associated
  data = tenant, pseudonym, name_tag).
- ``UserEvent``: interactions; the client's event id is stored only as a keyed hash
  (``event_key``), which is what idempotency checks; ``folded`` says whether the event is in the
  user's state (false while the item has no content vector yet).
- ``UserState``: the real-time feature state (``apps.modeling.ml.features`` format), binary-encoded
  by ``apps.profiles.state_codec``; one row per user, locked while events fold in.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from apps.tenancy.models import Tenant, TenantOwned


class EndUser(TenantOwned):
    # The unique (tenant, pseudonym) index covers tenant lookups.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, db_index=False)
    pseudonym = models.BinaryField(max_length=32)
    wrapped_key = models.BinaryField(null=True)
    key_version = models.PositiveIntegerField(null=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "pseudonym"], name="profiles_enduser_pseudonym_uniq")
        ]
        indexes = [
            models.Index(
                fields=["tenant", "key_version"],
                name="profiles_enduser_keyver_idx",
                condition=models.Q(key_version__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"user {self.pk} of tenant {self.tenant_id}"


class UserAttribute(TenantOwned):
    user = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="attributes", db_index=False)
    name_tag = models.BinaryField(max_length=32)
    ciphertext = models.BinaryField()
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "name_tag"], name="profiles_attribute_name_uniq")
        ]

    def __str__(self) -> str:
        return f"attribute {self.pk} of user {self.user_id}"


class EventType(models.TextChoices):
    VIEW = "view"
    CLICK = "click"
    CART = "cart"
    PURCHASE = "purchase"
    RATING = "rating"


class UserEvent(TenantOwned):
    # The unique (tenant, event_key) index covers tenant lookups; no separate tenant index.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, db_index=False)
    user = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="events", db_index=False)
    item = models.ForeignKey("catalog.Item", on_delete=models.CASCADE, related_name="+")
    event_key = models.BinaryField(max_length=32)
    type = models.CharField(max_length=8, choices=EventType.choices)
    value = models.FloatField()
    ts = models.DateTimeField()
    folded = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "event_key"], name="profiles_event_idempotency")
        ]
        indexes = [
            models.Index(fields=["user", "ts"], name="profiles_event_user_ts_idx"),
            models.Index(fields=["tenant", "ts"], name="profiles_event_tenant_ts_idx"),
            models.Index(
                fields=["tenant"], name="profiles_event_pending_idx", condition=models.Q(folded=False)
            ),
        ]

    def __str__(self) -> str:
        return f"event {self.pk} ({self.type})"


class UserState(TenantOwned):
    user = models.OneToOneField(EndUser, on_delete=models.CASCADE, primary_key=True, related_name="state")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, db_index=False)
    data = models.BinaryField(null=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"state of user {self.user_id}"
