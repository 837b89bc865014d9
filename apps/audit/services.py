"""Appending to the audit chain, signing its head, checking it, and exporting it for reviewers.

Chains: one per tenant (``tenant_id``) plus the platform chain (``tenant_id=None``). Every
event is sealed with :func:`apps.audit.chain.make_event` and stored with exactly the hashed
fields, so any row can be re-verified later from the row alone.

Concurrency: an append takes a transaction-scoped advisory lock on its chain before reading
the head, so concurrent writers (threads, processes, hosts) queue up instead of forking the
chain; the unique (tenant, sequence) constraint and an insert trigger that demands
``sequence = head + 1`` and ``prev_hash = head hash`` are the backstops in the database.
The lock is held until the caller's transaction ends: keep audited transactions short.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.audit.bundle import build_bundle, events_to_csv, make_export_checkpoint
from apps.audit.chain import (
    VerifyResult,
    format_time,
    genesis_hash,
    key_id,
    make_event,
    public_key_to_pem,
    sign_checkpoint,
    verify_chain,
    verify_checkpoint,
)
from apps.audit.models import AuditCheckpoint, AuditEvent
from apps.audit.ranges import check_range
from apps.audit.signing import signing_key, trusted_public_keys
from apps.audit.sinks import SinkError, checkpoint_sink
from apps.core.audit import AuditAction, SystemActor, user_actor
from apps.core.errors import DomainError, ErrorCode
from apps.core.tenant_db import PLATFORM_GUC, TENANT_GUC, dangerously_as_platform, tenant_context
from apps.tenancy.models import Tenant
from apps.tenancy.selectors import memberships_for_user

logger = logging.getLogger(__name__)

#: Keys that must never appear in ``details`` (at any depth): credentials have no place in the log.
FORBIDDEN_DETAIL_KEYS = ("password", "passwd", "passphrase", "secret", "raw_key", "api_key_secret")
_VERIFY_CHUNK = 2000


class AuditChainBroken(DomainError):
    """The stored chain fails verification: nothing is signed or exported until it is explained."""

    status = 409
    code = ErrorCode.AUDIT_CHAIN_BROKEN


@dataclass(frozen=True)
class LiveVerifyResult(VerifyResult):
    """:class:`VerifyResult` plus what was checked (and the verified head, when ``ok``)."""

    events: int = 0
    checkpoints: int = 0
    head_sequence: int = 0
    head_hash: str = ""


# ---------------------------------------------------------------------------- chain plumbing


def _chain_lock_key(tenant_id: int | None) -> str:
    return "sotto.audit:" + ("platform" if tenant_id is None else str(int(tenant_id)))


_slugs: dict[int, str] = {}


def _slug_of(tenant_id: int) -> str:
    """The tenant's slug, which the chain hashes (immutable, so cached per process)."""
    slug = _slugs.get(tenant_id)
    if slug is None:
        try:
            slug = Tenant.objects.values_list("slug", flat=True).get(pk=tenant_id)
        except Tenant.DoesNotExist:
            raise ValueError(f"audit event for unknown tenant id {tenant_id}") from None
        _slugs[tenant_id] = slug
    return slug


@contextlib.contextmanager
def _chain_scope(tenant_id: int | None) -> Iterator[None]:
    """Make the chain's rows visible and writable here (RLS), joining the caller's transaction.

    A tenant event written while another tenant is active is a bug in the caller: refused.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT NULLIF(current_setting(%s, true), ''), current_setting(%s, true) = 'on'",
            [TENANT_GUC, PLATFORM_GUC],
        )
        row = cursor.fetchone()
    current = None if row is None or row[0] is None else int(row[0])
    platform = bool(row and row[1])
    if platform:
        yield
    elif tenant_id is None:
        with dangerously_as_platform():
            yield
    elif current is None:
        with tenant_context(tenant_id):
            yield
    elif current != tenant_id:
        raise RuntimeError(f"audit event for tenant {tenant_id} inside tenant {current}'s transaction")
    else:
        yield


def _lock_chain(tenant_id: int | None) -> int:
    """Serialise writers of this chain until the transaction ends; returns the transaction id."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0)), txid_current()",
            [_chain_lock_key(tenant_id)],
        )
        row = cursor.fetchone()
    assert row is not None
    return int(row[1])


_APPENDED_ATTR = "_sotto_audit_appended"


def _note_append(txid: int, tenant_id: int | None) -> None:
    seen: tuple[int, set[int | None]] | None = getattr(connection, _APPENDED_ATTR, None)
    if seen is None or seen[0] != txid:
        seen = (txid, set())
        setattr(connection, _APPENDED_ATTR, seen)
    seen[1].add(tenant_id)


def _refuse_uncommitted_head(tenant_id: int | None) -> None:
    """Never sign a head this transaction wrote itself: if it rolled back, the signature would vouch
    for events that never existed and the next events would contradict it."""
    seen: tuple[int, set[int | None]] | None = getattr(connection, _APPENDED_ATTR, None)
    if seen is None or not connection.in_atomic_block or tenant_id not in seen[1]:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT txid_current_if_assigned()")
        row = cursor.fetchone()
    if row is not None and row[0] is not None and int(row[0]) == seen[0]:
        raise RuntimeError(
            "this transaction already appended to the chain: sign or export it in its own transaction"
        )


def _chain_rows(tenant_id: int | None) -> QuerySet[AuditEvent]:
    if tenant_id is None:
        return AuditEvent.objects.filter(tenant__isnull=True)
    return AuditEvent.objects.filter(tenant_id=tenant_id)


def _checkpoint_rows(tenant_id: int | None) -> QuerySet[AuditCheckpoint]:
    if tenant_id is None:
        return AuditCheckpoint.objects.filter(tenant__isnull=True)
    return AuditCheckpoint.objects.filter(tenant_id=tenant_id)


def _check_details(value: object, path: str = "details") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            lowered = str(key).lower()
            if any(word in lowered for word in FORBIDDEN_DETAIL_KEYS):
                raise ValueError(f"{path}.{key}: credentials must never be written to the audit log")
            if "\x00" in str(key):
                raise ValueError(f"{path}: NUL characters cannot be stored")
            _check_details(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_details(item, f"{path}[{i}]")
    elif isinstance(value, str) and "\x00" in value:
        raise ValueError(f"{path}: NUL characters cannot be stored")


def row_to_event(row: AuditEvent) -> dict[str, Any]:
    """The sealed event dict (``chain.py`` format) of a stored row."""
    return {
        "tenant": row.tenant_slug,
        "sequence": row.sequence,
        "time": format_time(row.time),
        "actor": row.actor,
        "action": row.action,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "details": row.details,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def row_to_checkpoint(row: AuditCheckpoint) -> dict[str, Any]:
    """The signed checkpoint dict (``chain.py`` format) of a stored row."""
    cp: dict[str, Any] = {
        "kind": row.kind,
        "tenant": row.tenant_slug,
        "sequence": row.sequence,
        "head_hash": row.head_hash,
        "signed_at": row.signed_at,
        "key_id": row.key_id,
        "signature": row.signature,
    }
    if row.kind == AuditCheckpoint.Kind.EXPORT:
        cp["first_sequence"] = row.first_sequence
        cp["first_prev_hash"] = row.first_prev_hash
    return cp


# ---------------------------------------------------------------------------- append


def audit_append(
    *,
    tenant_id: int | None,
    actor: str,
    action: str,
    target_type: str = "",
    target_id: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Seal and append one event to the tenant's chain (``tenant_id=None``: the platform chain).

    Runs inside the caller's transaction, so the action and its record commit or roll back
    together (no savepoint of its own: a failed append is the caller's failure too).
    ``details`` must be JSON without floats (see ``chain.py``), pseudonymous, and free of
    credentials: never raw end-user ids, attribute values, passwords or keys.
    """
    details = dict(details or {})
    _check_details(details)
    actor, action = str(actor), str(action)  # an enum member (apps.core.audit) is stored as its plain string
    for name, value in (
        ("actor", actor),
        ("action", action),
        ("target_type", target_type),
        ("target_id", target_id),
    ):
        if "\x00" in value:
            raise ValueError(f"{name}: NUL characters cannot be stored")
    with transaction.atomic(savepoint=False), _chain_scope(tenant_id):
        txid = _lock_chain(tenant_id)
        head = _chain_rows(tenant_id).order_by("-sequence").values_list("sequence", "hash", "time").first()
        slug = None if tenant_id is None else _slug_of(tenant_id)
        now = timezone.now()
        if head is not None and head[2] > now:
            now = head[2]  # times never go backwards along a chain (clock skew between hosts)
        sequence, prev_hash = (head[0] + 1, head[1]) if head is not None else (1, genesis_hash(slug))
        sealed = make_event(
            tenant=slug,
            sequence=sequence,
            time=now,
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            details=details,
            prev_hash=prev_hash,
        )
        event = AuditEvent.objects.create(
            tenant_id=tenant_id,
            tenant_slug=slug,
            sequence=sequence,
            time=now,
            actor=actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            details=details,
            prev_hash=prev_hash,
            hash=sealed["hash"],
        )
        _note_append(txid, tenant_id)
    return event


# ---------------------------------------------------------------------------- checkpoints


def _store_checkpoint(checkpoint: dict[str, Any], tenant_id: int | None) -> AuditCheckpoint:
    """Keep the checkpoint in the database now and in the external sink once the transaction commits."""
    row = AuditCheckpoint.objects.create(
        tenant_id=tenant_id,
        tenant_slug=checkpoint["tenant"],
        kind=checkpoint["kind"],
        sequence=checkpoint["sequence"],
        head_hash=checkpoint["head_hash"],
        signed_at=checkpoint["signed_at"],
        first_sequence=checkpoint.get("first_sequence"),
        first_prev_hash=checkpoint.get("first_prev_hash"),
        key_id=checkpoint["key_id"],
        signature=checkpoint["signature"],
    )

    def publish() -> None:
        try:
            checkpoint_sink().write(checkpoint)
        except SinkError:
            # The database copy exists; the next checkpoint_all run copies it to the sink again.
            logger.exception(
                "audit checkpoint %s@%s not copied to the sink (checkpoint_all retries)",
                checkpoint["tenant"] or "<platform>",
                checkpoint["sequence"],
            )

    transaction.on_commit(publish)
    return row


def audit_checkpoint(*, tenant_id: int | None, force: bool = False) -> dict[str, Any] | None:
    """Sign the chain's current head (a periodic checkpoint); ``None`` when nothing changed.

    Before signing, the events since the last checkpoint are re-checked from its signed head,
    so a signature never vouches for a broken link (:class:`AuditChainBroken` instead).
    Must not run in a transaction that appended to the same chain.
    """
    _refuse_uncommitted_head(tenant_id)
    slug = None if tenant_id is None else _slug_of(tenant_id)
    key = signing_key()
    with transaction.atomic(), _chain_scope(tenant_id):
        _lock_chain(tenant_id)
        last = _checkpoint_rows(tenant_id).order_by("-sequence", "-signed_at").first()
        head = _chain_rows(tenant_id).order_by("-sequence").values_list("sequence", "hash").first()
        head_seq, head_hash = head if head is not None else (0, genesis_hash(slug))
        if not force and (head_seq == 0 or (last is not None and last.sequence == head_seq)):
            return None
        start_seq, start_hash = 0, genesis_hash(slug)
        if last is not None:
            signer = trusted_public_keys().get(last.key_id)
            if signer is None or not verify_checkpoint(signer, row_to_checkpoint(last)):
                raise AuditChainBroken(
                    f"the latest stored checkpoint (sequence {last.sequence}, key id {last.key_id}) does not verify "
                    "with a trusted key (after a rotation, list the old public key in SOTTO_AUDIT_PREVIOUS_PUBLIC_KEYS)",
                    details={"sequence": last.sequence},
                )
            if last.sequence > head_seq:
                raise AuditChainBroken(
                    f"chain ends at sequence {head_seq} but a signed checkpoint covers {last.sequence} (events deleted)",
                    details={"sequence": head_seq + 1},
                )
            start_seq, start_hash = last.sequence, last.head_hash
        newer = [
            row_to_event(r)
            for r in _chain_rows(tenant_id).filter(sequence__gt=start_seq).order_by("sequence")
        ]
        result = verify_chain(newer, tenant=slug, start_sequence=start_seq + 1, start_prev_hash=start_hash)
        if (
            not result.ok
            or (newer and newer[-1]["sequence"] != head_seq)
            or (not newer and start_seq != head_seq)
        ):
            raise AuditChainBroken(
                f"audit chain broken at sequence {result.bad_sequence}: {result.reason}",
                details={"sequence": result.bad_sequence},
            )
        checkpoint = sign_checkpoint(key, slug, head_seq, head_hash, timezone.now())
        _store_checkpoint(checkpoint, tenant_id)
    return checkpoint


def _resync_sink(tenant_id: int | None, slug: str | None) -> int:
    """Copy recent database checkpoints missing from the sink (after a failed write); returns how many."""
    sink = checkpoint_sink()
    present = {(c.get("signature"), c.get("sequence")) for c in sink.read(slug)}
    copied = 0
    with transaction.atomic(), _chain_scope(tenant_id):
        for row in _checkpoint_rows(tenant_id).order_by("-sequence", "-signed_at")[:100]:
            cp = row_to_checkpoint(row)
            if (cp["signature"], cp["sequence"]) in present:
                break
            sink.write(cp)
            copied += 1
    return copied


def audit_checkpoint_all() -> dict[str, int]:
    """Checkpoint the platform chain and every tenant's (the hourly beat task). One tenant's
    broken chain is logged as critical and skipped; the others are still signed."""
    counts = {"signed": 0, "unchanged": 0, "broken": 0, "resynced": 0}
    chains: list[tuple[int | None, str | None]] = [(None, None)]
    chains += list(Tenant.objects.order_by("id").values_list("id", "slug"))
    for tenant_id, slug in chains:
        try:
            signed = audit_checkpoint(tenant_id=tenant_id)
            counts["resynced"] += _resync_sink(tenant_id, slug)
        except AuditChainBroken as exc:
            counts["broken"] += 1
            logger.critical("audit chain %s is broken, not signed: %s", slug or "<platform>", exc.message)
            continue
        except SinkError:
            logger.exception("audit checkpoint sink unavailable for chain %s", slug or "<platform>")
            continue
        counts["signed" if signed else "unchanged"] += 1
    return counts


# ---------------------------------------------------------------------------- verification


def _fail(seq: int | None, reason: str, events: int = 0, checkpoints: int = 0) -> LiveVerifyResult:
    return LiveVerifyResult(False, seq, reason, events=events, checkpoints=checkpoints)


def _checkpoint_order(cp: dict[str, Any]) -> tuple[int, str]:
    seq = cp.get("sequence")
    return (seq if isinstance(seq, int) and not isinstance(seq, bool) else -1, str(cp.get("signed_at")))


def _verify_live(tenant_id: int | None, slug: str | None) -> LiveVerifyResult:
    """Walk the whole stored chain from sequence 1 against every signed checkpoint, from the
    database and from the external sink; the caller has entered the chain's scope."""
    trusted = trusted_public_keys()
    current_kid = key_id(signing_key().public_key())
    checkpoints = [
        row_to_checkpoint(r) for r in _checkpoint_rows(tenant_id).order_by("sequence", "signed_at")
    ]
    try:
        checkpoints += checkpoint_sink().read(slug)
    except SinkError as exc:
        return _fail(None, f"checkpoint sink unreadable: {exc}")
    genesis = genesis_hash(slug)
    unique = {json.dumps(cp, sort_keys=True, default=str): cp for cp in checkpoints}  # DB and sink overlap
    checkpoints = sorted(unique.values(), key=_checkpoint_order)
    signed: dict[int, str] = {}
    for cp in checkpoints:
        seq = cp.get("sequence")
        at = seq if isinstance(seq, int) else None
        if cp.get("tenant") != slug:
            return _fail(at, f"checkpoint belongs to tenant {cp.get('tenant')!r}, not {slug!r}")
        signer = trusted.get(str(cp.get("key_id")))
        if signer is None:
            return _fail(
                at,
                f"checkpoint is signed by key id {cp.get('key_id')!r}, not the current key {current_kid} nor a "
                "listed previous one (forged, or a rotation without SOTTO_AUDIT_PREVIOUS_PUBLIC_KEYS)",
            )
        if not verify_checkpoint(signer, cp):
            return _fail(at, "invalid checkpoint signature (checkpoint forged or altered)")
        pins = [(cp["sequence"], cp["head_hash"])]
        if cp["kind"] == AuditCheckpoint.Kind.EXPORT:
            pins.append((cp["first_sequence"] - 1, cp["first_prev_hash"]))
        for pin_seq, pin_hash in pins:
            if signed.setdefault(pin_seq, pin_hash) != pin_hash:
                return _fail(
                    pin_seq, "two signed checkpoints disagree on the head hash (chain was rewritten)"
                )
    if signed.get(0, genesis) != genesis:
        return _fail(0, "a signed checkpoint at sequence 0 is not this chain's genesis")

    expected_seq, prev = 1, genesis
    rows = _chain_rows(tenant_id).order_by("sequence")
    for row in rows.iterator(chunk_size=_VERIFY_CHUNK):
        event = row_to_event(row)
        result = verify_chain([event], tenant=slug, start_sequence=expected_seq, start_prev_hash=prev)
        if not result.ok:
            return _fail(result.bad_sequence, result.reason, expected_seq - 1, len(checkpoints))
        if signed.get(expected_seq, event["hash"]) != event["hash"]:
            return _fail(
                expected_seq,
                "event does not match the signed checkpoint at this sequence (events rewritten or forged)",
                expected_seq - 1,
                len(checkpoints),
            )
        expected_seq, prev = expected_seq + 1, event["hash"]
    last = expected_seq - 1
    covered = max(signed, default=0)
    if covered > last:
        return _fail(
            last + 1,
            f"chain ends at sequence {last} but a signed checkpoint covers up to {covered} (events deleted)",
            last,
            len(checkpoints),
        )
    return LiveVerifyResult(
        True, None, "ok", events=last, checkpoints=len(checkpoints), head_sequence=last, head_hash=prev
    )


def audit_verify_live(tenant: Tenant | None) -> LiveVerifyResult:
    """Check the stored chain of ``tenant`` (``None``: the platform chain) from sequence 1:
    tenant binding, contiguous sequences, links, recomputed hashes, and every signed checkpoint
    (database and sink) against the current public key. Reports the first bad sequence."""
    tenant_id = None if tenant is None else tenant.pk
    slug = None if tenant is None else tenant.slug
    with transaction.atomic(), _chain_scope(tenant_id):
        return _verify_live(tenant_id, slug)


# ---------------------------------------------------------------------------- export


@dataclass(frozen=True)
class _Range:
    events: list[dict[str, Any]]
    anchor: tuple[int, str] | None
    first_sequence: int
    last_sequence: int


def _select_range(tenant_id: int, slug: str, since: datetime | None, until: datetime | None) -> _Range:
    rows = _chain_rows(tenant_id)
    selected = rows
    if since is not None:
        selected = selected.filter(time__gte=since)
    if until is not None:
        selected = selected.filter(time__lt=until)
    events = [row_to_event(r) for r in selected.order_by("sequence")]
    if events:
        first, last = events[0]["sequence"], events[-1]["sequence"]
        if last - first + 1 != len(events):
            raise AuditChainBroken(f"events between sequences {first} and {last} are not contiguous in time")
        return _Range(events, None, first, last)
    before = (
        rows.filter(time__lt=since).order_by("-sequence").values_list("sequence", "hash").first()
        if since
        else None
    )
    anchor = (int(before[0]), str(before[1])) if before is not None else (0, genesis_hash(slug))
    return _Range([], anchor, anchor[0] + 1, anchor[0])


def _export(*, tenant: Tenant, since: datetime | None, until: datetime | None, actor: str, fmt: str) -> bytes:
    check_range(since, until)
    tenant_id, slug = int(tenant.pk), tenant.slug
    _refuse_uncommitted_head(tenant_id)
    with transaction.atomic(), _chain_scope(tenant_id):
        # Check the whole chain first without blocking writers, then only what arrived since.
        checked = _verify_live(tenant_id, slug)
        if not checked.ok:
            raise AuditChainBroken(
                f"audit chain broken at sequence {checked.bad_sequence}: {checked.reason}",
                details={"sequence": checked.bad_sequence},
            )
        _lock_chain(tenant_id)
        newer = [
            row_to_event(r)
            for r in _chain_rows(tenant_id).filter(sequence__gt=checked.head_sequence).order_by("sequence")
        ]
        delta = verify_chain(
            newer, tenant=slug, start_sequence=checked.head_sequence + 1, start_prev_hash=checked.head_hash
        )
        if not delta.ok:
            raise AuditChainBroken(
                f"audit chain broken at sequence {delta.bad_sequence}: {delta.reason}",
                details={"sequence": delta.bad_sequence},
            )
        selected = _select_range(tenant_id, slug, since, until)
        now = timezone.now()
        details: dict[str, Any] = {
            "format": fmt,
            "since": format_time(since) if since else None,
            "until": format_time(until) if until else None,
            "event_count": len(selected.events),
            "first_sequence": selected.first_sequence if selected.events else None,
            "last_sequence": selected.last_sequence if selected.events else None,
        }
        if fmt == "zip":
            key = signing_key()
            kid = key_id(key.public_key())
            periodic = [
                row_to_checkpoint(r)
                for r in _checkpoint_rows(tenant_id).filter(
                    kind=AuditCheckpoint.Kind.PERIODIC,
                    key_id=kid,
                    sequence__gte=selected.first_sequence - 1,
                    sequence__lte=selected.last_sequence,
                )
            ]
            export_cp = make_export_checkpoint(
                key, slug, selected.events, signed_at=now, anchor=selected.anchor
            )
            _store_checkpoint(export_cp, tenant_id)
            data = build_bundle(
                slug,
                selected.events,
                [*periodic, export_cp],
                public_key_to_pem(key.public_key()),
                since,
                until,
                created_at=now,
            )
            details.update(key_id=kid, checkpoint_signed_at=export_cp["signed_at"])
        else:
            data = events_to_csv(selected.events)
        audit_append(
            tenant_id=tenant_id,
            actor=actor,
            action=AuditAction.AUDIT_EXPORT,
            target_type="tenant",
            target_id=slug,
            details=details,
        )
    return data


def audit_export_bundle(
    *, tenant: Tenant, since: datetime | None, until: datetime | None, actor: str
) -> bytes:
    """The reviewer's zip for events with ``since <= time < until`` (open ends allowed).

    Verifies the whole chain first (:class:`AuditChainBroken`, 409, if it does not), signs an
    export checkpoint over exactly the exported range, records an ``audit.export`` event (after
    the range, so the next export shows this one) and returns the bundle bytes
    (``bundle.py`` layout, checked offline by ``verify_audit_bundle.py``). Run it in its own
    transaction, or before any other audited change in the caller's.
    """
    return _export(tenant=tenant, since=since, until=until, actor=actor, fmt="zip")


def audit_export_csv(*, tenant: Tenant, since: datetime | None, until: datetime | None, actor: str) -> bytes:
    """The same range as a spreadsheet (UTF-8 CSV, formula-safe). A view only: it carries no
    signature, so reviewers verify the zip; also recorded as an ``audit.export`` event."""
    return _export(tenant=tenant, since=since, until=until, actor=actor, fmt="csv")


# ---------------------------------------------------------------------------- sign-ins


def audit_record_login(*, user: AbstractBaseUser, via: str, platform: bool = True) -> None:
    """``auth.login`` on the platform chain (when ``platform``) and on every member tenant's chain."""
    actor = user_actor(user.get_username())
    details = {"via": via}
    with transaction.atomic():
        if platform:
            audit_append(
                tenant_id=None,
                actor=actor,
                action=AuditAction.AUTH_LOGIN,
                target_type="user",
                target_id=str(user.pk),
                details=details,
            )
        tenant_ids = sorted({int(m.tenant_id) for m in memberships_for_user(user=user)})
        for tenant_id in tenant_ids:
            audit_append(
                tenant_id=tenant_id,
                actor=actor,
                action=AuditAction.AUTH_LOGIN,
                target_type="user",
                target_id=str(user.pk),
                details=details,
            )


def audit_record_login_failed(*, user_id: int | None, via: str) -> None:
    """``auth.login_failed`` on the platform chain; names the account only when it exists."""
    with transaction.atomic():
        audit_append(
            tenant_id=None,
            actor=SystemActor.ANONYMOUS,
            action=AuditAction.AUTH_LOGIN_FAILED,
            target_type="user" if user_id is not None else "",
            target_id="" if user_id is None else str(user_id),
            details={"via": via, "known_account": user_id is not None},
        )
