"""Per-tenant keys: creation (also for each new tenant, via ``on_tenant_created``), lookup with caching,
and re-wrapping under a new master key.
"""

from __future__ import annotations

from django.db import connection

from apps.core import audit
from apps.core.audit import AuditAction, SystemActor
from apps.core.hooks import on_tenant_created
from apps.core.tenant_db import tenant_context
from apps.tenancy.keyring.cache import _cache_get, _cache_put
from apps.tenancy.keyring.master import (
    _new_version_row,
    _tenant_key_ad,
    _unwrap_tenant_key,
    master_key,
    master_key_id,
)
from apps.tenancy.keyring.primitives import ENC, PSEUDONYM, KeyringError, KeyVersionRetired, aead_seal
from apps.tenancy.models import TenantKey


def tenant_keys_rewrap(*, tenant_id: int) -> int:
    """Re-wrap every live key of one tenant under the current master key; returns rows changed.

    Master-key rotation: set the new ``SOTTO_MASTER_KEY``, list the old one in
    ``SOTTO_PREVIOUS_MASTER_KEYS``, run ``manage.py rewrap_tenant_keys``, then drop the old key.
    Reads never fail meanwhile: each row names the master that wrapped it.
    """
    master = master_key()
    current_id = master_key_id(master)
    changed = 0
    with tenant_context(tenant_id):
        rows = (
            TenantKey.objects.select_for_update()
            .filter(tenant_id=tenant_id, wrapped__isnull=False)
            .exclude(master_key_id=current_id)
        )
        for row in rows:
            assert row.wrapped is not None  # filtered above
            raw = _unwrap_tenant_key(
                tenant_id, row.purpose, row.version, bytes(row.wrapped), row.master_key_id
            )
            row.wrapped = aead_seal(master, raw, _tenant_key_ad(tenant_id, row.purpose, row.version))
            row.master_key_id = current_id
            row.save(update_fields=["wrapped", "master_key_id"])
            changed += 1
        if changed:
            audit.record(
                tenant_id=tenant_id,
                actor=SystemActor.SYSTEM,
                action=AuditAction.KEYS_MASTER_REWRAP,
                target_type="tenant_key",
                target_id=current_id,
                details={"rows": changed},
            )
    return changed


def tenant_keys_create(*, tenant_id: int) -> None:
    """Create the tenant's pseudonym key and first encryption key if missing (idempotent)."""
    TenantKey.objects.bulk_create(
        [_new_version_row(tenant_id, PSEUDONYM, 1), _new_version_row(tenant_id, ENC, 1)],
        ignore_conflicts=True,
    )


@on_tenant_created
def _create_keys_for_new_tenant(tenant_id: int) -> None:
    tenant_keys_create(tenant_id=tenant_id)


def pseudonym_key(tenant_id: int) -> bytes:
    """The tenant's HMAC key for pseudonyms (cached for the life of the process)."""
    cached = _cache_get(tenant_id, PSEUDONYM, 1)
    if cached is not None:
        return cached
    for _ in range(2):
        row = (
            TenantKey.objects.filter(tenant_id=tenant_id, purpose=PSEUDONYM, status=TenantKey.Status.ACTIVE)
            .values_list("version", "wrapped", "master_key_id")
            .first()
        )
        if row is not None:
            version, wrapped, stored_id = row
            if wrapped is None:
                raise KeyringError(f"tenant {tenant_id} pseudonym key has no key material")
            key = _unwrap_tenant_key(tenant_id, PSEUDONYM, version, bytes(wrapped), stored_id)
            _cache_put(tenant_id, PSEUDONYM, 1, key)
            return key
        tenant_keys_create(tenant_id=tenant_id)
    raise KeyringError(f"tenant {tenant_id} has no pseudonym key (is the transaction scoped to it?)")


def _active_encryption_key(tenant_id: int) -> tuple[int, bytes]:
    """The active ``enc`` version and key, its row locked FOR SHARE until the transaction ends."""
    if not connection.in_atomic_block:
        raise RuntimeError("wrapping a user key needs a transaction (the version row is share-locked)")
    for _ in range(4):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT version, wrapped, master_key_id FROM tenancy_tenantkey "
                "WHERE tenant_id = %s AND purpose = %s AND status = 'active' FOR SHARE",
                [tenant_id, ENC],
            )
            row = cursor.fetchone()
        if row is None:
            # Either a rotation flipped versions while we waited (re-read sees the new one) or
            # the tenant predates the keyring.
            if not TenantKey.objects.filter(tenant_id=tenant_id, purpose=ENC).exists():
                tenant_keys_create(tenant_id=tenant_id)
            continue
        version, wrapped, stored_id = int(row[0]), bytes(row[1]), str(row[2])
        key = _cache_get(tenant_id, ENC, version)
        if key is None:
            key = _unwrap_tenant_key(tenant_id, ENC, version, wrapped, stored_id)
            _cache_put(tenant_id, ENC, version, key)
        return version, key
    raise KeyringError(f"tenant {tenant_id} has no active encryption key")


def _encryption_key_version(tenant_id: int, version: int) -> bytes:
    cached = _cache_get(tenant_id, ENC, version)
    if cached is not None:
        return cached
    row = (
        TenantKey.objects.filter(tenant_id=tenant_id, purpose=ENC, version=version)
        .values_list("status", "wrapped", "master_key_id")
        .first()
    )
    if row is None:
        raise KeyringError(f"tenant {tenant_id} has no encryption key v{version}")
    status, wrapped, stored_id = row
    if status == TenantKey.Status.RETIRED or wrapped is None:
        raise KeyVersionRetired(f"tenant {tenant_id} encryption key v{version} is retired")
    key = _unwrap_tenant_key(tenant_id, ENC, version, bytes(wrapped), stored_id)
    _cache_put(tenant_id, ENC, version, key)
    return key
