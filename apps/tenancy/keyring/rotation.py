"""Rotating a tenant's ``enc`` key: new version, re-wrapping user keys held by registered stores in
batches, retiring drained versions, and reporting versions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from django.db import transaction
from django.utils import timezone

from apps.core import audit
from apps.core.audit import AuditAction, SystemActor
from apps.core.tenant_db import tenant_context
from apps.tenancy.keyring.cache import _cache, _cache_lock
from apps.tenancy.keyring.master import _new_version_row
from apps.tenancy.keyring.primitives import ENC, aead_seal
from apps.tenancy.keyring.tenant_keys import _active_encryption_key, tenant_keys_create
from apps.tenancy.keyring.user_keys import WrappedKey, _user_key_ad, user_key_unwrap
from apps.tenancy.models import TenantKey


@dataclass(frozen=True)
class WrappedRow:
    """One stored user key as a store hands it to the keyring for re-wrapping."""

    row_id: int
    subject: bytes
    key: WrappedKey


class WrappedKeyStore(Protocol):
    """Where an app keeps user keys wrapped under tenant encryption keys."""

    name: str

    def lock_wrapped(self, *, tenant_id: int, versions: Sequence[int], limit: int) -> list[WrappedRow]:
        """Up to ``limit`` rows wrapped under ``versions``, locked (FOR UPDATE SKIP LOCKED)."""

    def save_wrapped(self, *, tenant_id: int, rows: Sequence[WrappedRow]) -> None:
        """Store re-wrapped keys for rows returned by :meth:`lock_wrapped`."""

    def count_wrapped(self, *, tenant_id: int, versions: Sequence[int]) -> int:
        """How many rows are still wrapped under ``versions``."""


_stores: dict[str, WrappedKeyStore] = {}


def register_wrapped_key_store(store: WrappedKeyStore) -> None:
    _stores[store.name] = store


def tenant_key_rotate(*, tenant_id: int, actor: str, enqueue: bool = True) -> int:
    """Add a new active encryption key version; the previous one becomes ``retiring``.

    With ``enqueue`` the re-wrap task is queued (Celery, default queue) once this commits.
    Returns the new version. The pseudonym key is never rotated.
    """
    with tenant_context(tenant_id):
        rows = list(
            TenantKey.objects.select_for_update().filter(tenant_id=tenant_id, purpose=ENC).order_by("version")
        )
        if not rows:
            tenant_keys_create(tenant_id=tenant_id)
            rows = list(
                TenantKey.objects.select_for_update()
                .filter(tenant_id=tenant_id, purpose=ENC)
                .order_by("version")
            )
        previous = [row.version for row in rows if row.status == TenantKey.Status.ACTIVE]
        TenantKey.objects.filter(tenant_id=tenant_id, purpose=ENC, status=TenantKey.Status.ACTIVE).update(
            status=TenantKey.Status.RETIRING
        )
        version = max(row.version for row in rows) + 1
        _new_version_row(tenant_id, ENC, version).save(force_insert=True)
        audit.record(
            tenant_id=tenant_id,
            actor=actor,
            action=AuditAction.TENANT_KEY_ROTATE,
            target_type="tenant_key",
            target_id=f"enc:v{version}",
            details={"new_version": version, "retiring": previous},
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue_rewrap(tenant_id))
    return version


def _enqueue_rewrap(tenant_id: int) -> None:
    from apps.tenancy.tasks import rewrap_user_keys

    rewrap_user_keys.apply_async(args=[tenant_id])


@dataclass(frozen=True)
class RewrapProgress:
    rewrapped: int
    remaining: int
    retiring: tuple[int, ...]


def _retiring_versions(tenant_id: int) -> list[int]:
    return list(
        TenantKey.objects.filter(tenant_id=tenant_id, purpose=ENC, status=TenantKey.Status.RETIRING)
        .order_by("version")
        .values_list("version", flat=True)
    )


def rewrap_batch(*, tenant_id: int, limit: int = 500) -> RewrapProgress:
    """Re-wrap up to ``limit`` user keys (per store) from retiring versions to the active one.

    One transaction; rows another transaction holds are skipped (they come back next batch).
    """
    with tenant_context(tenant_id):
        retiring = _retiring_versions(tenant_id)
        if not retiring:
            return RewrapProgress(0, 0, ())
        active_version, active_key = _active_encryption_key(tenant_id)
        done = 0
        for store in _stores.values():
            rows = store.lock_wrapped(tenant_id=tenant_id, versions=retiring, limit=limit)
            fresh = []
            for row in rows:
                raw = user_key_unwrap(tenant_id=tenant_id, subject=row.subject, wrapped=row.key)
                blob = aead_seal(active_key, raw, _user_key_ad(tenant_id, active_version, row.subject))
                fresh.append(WrappedRow(row.row_id, row.subject, WrappedKey(active_version, blob)))
            store.save_wrapped(tenant_id=tenant_id, rows=fresh)
            done += len(fresh)
        remaining = sum(s.count_wrapped(tenant_id=tenant_id, versions=retiring) for s in _stores.values())
        return RewrapProgress(done, remaining, tuple(retiring))


def retire_drained_versions(*, tenant_id: int, actor: str = SystemActor.SYSTEM) -> list[int]:
    """Retire every retiring version no stored key uses any more: erase its wrapped material."""
    retired: list[int] = []
    with tenant_context(tenant_id):
        rows = list(
            TenantKey.objects.select_for_update()
            .filter(tenant_id=tenant_id, purpose=ENC, status=TenantKey.Status.RETIRING)
            .order_by("version")
        )
        for row in rows:
            if any(s.count_wrapped(tenant_id=tenant_id, versions=[row.version]) for s in _stores.values()):
                continue
            row.status = TenantKey.Status.RETIRED
            row.wrapped = None
            row.retired_at = timezone.now()
            row.save(update_fields=["status", "wrapped", "retired_at"])
            retired.append(row.version)
            audit.record(
                tenant_id=tenant_id,
                actor=actor,
                action=AuditAction.TENANT_KEY_RETIRE,
                target_type="tenant_key",
                target_id=f"enc:v{row.version}",
                details={"version": row.version},
            )
    with _cache_lock:
        for version in retired:
            _cache.pop((tenant_id, ENC, version), None)
    return retired


def rotation_complete(
    *,
    tenant_id: int,
    actor: str = SystemActor.SYSTEM,
    batch: int = 500,
    deadline_s: float = 1500.0,
    progress: Callable[[RewrapProgress], Any] | None = None,
) -> bool:
    """Re-wrap until no key uses a retiring version, then retire them. False if out of time."""
    started = time.monotonic()
    idle = 0
    while time.monotonic() - started < deadline_s:
        step = rewrap_batch(tenant_id=tenant_id, limit=batch)
        if progress is not None:
            progress(step)
        if step.remaining == 0:
            retire_drained_versions(tenant_id=tenant_id, actor=actor)
            with tenant_context(tenant_id):
                if not _retiring_versions(tenant_id):
                    return True
        # Rows held by other transactions are skipped; wait for them instead of spinning.
        idle = idle + 1 if step.rewrapped == 0 else 0
        if idle:
            time.sleep(min(0.05 * idle, 1.0))
    return False


@dataclass(frozen=True)
class KeyVersionInfo:
    purpose: str
    version: int
    status: str
    wrapped_user_keys: int | None


def tenant_key_versions(*, tenant_id: int) -> list[KeyVersionInfo]:
    """Every key version of the tenant with how many user keys it still wraps (enc only)."""
    with tenant_context(tenant_id):
        rows = list(TenantKey.objects.filter(tenant_id=tenant_id).order_by("purpose", "version"))
        return [
            KeyVersionInfo(
                purpose=row.purpose,
                version=row.version,
                status=row.status,
                wrapped_user_keys=(
                    sum(
                        s.count_wrapped(tenant_id=tenant_id, versions=[row.version]) for s in _stores.values()
                    )
                    if row.purpose == ENC
                    else None
                ),
            )
            for row in rows
        ]
