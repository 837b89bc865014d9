"""Reads for the web admin, the API and the commands: events, checkpoints, the public key, the verifier.

Event and checkpoint querysets are row-level-security scoped: evaluate them inside
``tenant_context(tenant_id)`` (or ``dangerously_as_platform()`` for the platform chain, which
only platform operators may see); outside one they are empty.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.db.models import QuerySet

from apps.audit.models import AuditCheckpoint, AuditEvent
from apps.audit.signing import PublicKeyInfo, public_key_info

VERIFIER_PATH = Path(__file__).with_name("verify_audit_bundle.py")
VERIFIER_FILENAME = "verify_audit_bundle.py"


def audit_events(
    tenant_id: int | None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    action: str | None = None,
    action_prefix: str | None = None,
    actor: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
) -> QuerySet[AuditEvent]:
    """Events of one chain (``None``: platform), newest first, filtered; ``since <= time < until``.

    ``action_prefix="api_key."`` matches every API-key action. Slice it for paging.
    """
    qs = (
        AuditEvent.objects.filter(tenant__isnull=True)
        if tenant_id is None
        else AuditEvent.objects.filter(tenant_id=tenant_id)
    )
    if since is not None:
        qs = qs.filter(time__gte=since)
    if until is not None:
        qs = qs.filter(time__lt=until)
    if action:
        qs = qs.filter(action=action)
    if action_prefix:
        qs = qs.filter(action__startswith=action_prefix)
    if actor:
        qs = qs.filter(actor=actor)
    if target_type:
        qs = qs.filter(target_type=target_type)
    if target_id:
        qs = qs.filter(target_id=target_id)
    return qs.order_by("-sequence")


def audit_checkpoints(tenant_id: int | None, *, kind: str | None = None) -> QuerySet[AuditCheckpoint]:
    """Signed checkpoints of one chain, newest first (``kind``: "periodic" or "export")."""
    qs = (
        AuditCheckpoint.objects.filter(tenant__isnull=True)
        if tenant_id is None
        else AuditCheckpoint.objects.filter(tenant_id=tenant_id)
    )
    if kind:
        qs = qs.filter(kind=kind)
    return qs.order_by("-sequence", "-signed_at")


@dataclass(frozen=True)
class ChainHead:
    """Where a chain stands, cheaply (two indexed reads): for status badges, not a verification."""

    sequence: int
    hash: str | None
    time: datetime | None
    checkpoint_sequence: int | None
    checkpoint_signed_at: str | None


def audit_chain_head(tenant_id: int | None) -> ChainHead:
    """The chain's head and its latest signed checkpoint; evaluate in the chain's RLS scope.

    ``audit_verify_live`` walks the whole chain: run that on demand, not on every page view.
    """
    events = (
        AuditEvent.objects.filter(tenant__isnull=True)
        if tenant_id is None
        else AuditEvent.objects.filter(tenant_id=tenant_id)
    )
    head = events.order_by("-sequence").values_list("sequence", "hash", "time").first()
    latest = audit_checkpoints(tenant_id).values_list("sequence", "signed_at").first()
    return ChainHead(
        sequence=head[0] if head else 0,
        hash=head[1] if head else None,
        time=head[2] if head else None,
        checkpoint_sequence=latest[0] if latest else None,
        checkpoint_signed_at=latest[1] if latest else None,
    )


def audit_public_key() -> PublicKeyInfo:
    """The public half of the signing key: PEM, key id (in checkpoints) and full fingerprint."""
    return public_key_info()


def audit_verifier_script() -> bytes:
    """The standalone offline verifier, for reviewers to download (stdlib + ``cryptography``)."""
    return VERIFIER_PATH.read_bytes()


def audit_verifier_script_sha256() -> str:
    """SHA-256 of the verifier, to publish next to the download link."""
    return hashlib.sha256(audit_verifier_script()).hexdigest()
