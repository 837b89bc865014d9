"""State changes for end users: attributes, events, access export, erasure, state rebuilds, retention.

What callers may rely on:

- Client user ids are pseudonymised before anything touches the database and never stored,
  logged or queued (``apps.tenancy.pseudonyms``).
- Every check that can reject a request runs before the first write, and everything a call
  writes commits or rolls back with the caller's transaction.
- ``events_ingest`` is O(1) per event and two statements per batch for known users, whatever its
  size: one read that locks the affected users' state rows (ordered by id, so concurrent batches
  cannot deadlock) and resolves the items with their content vectors (the catalogue's tables,
  read directly: no row of them is locked), then one write that inserts the events (``ON
  CONFLICT DO NOTHING RETURNING``) and, only if every event was new, the states folded from them
  (``apps.profiles.folding``). One more statement when new users appear, one more when a resend
  mixes stored and new events (the states are then folded again from the new ones alone). A
  retried batch inserts nothing and folds nothing: idempotency is on the event id per tenant.
  Both statements bind their parameters on the server (``apps.core.bound_cursor``) and are prepared
  once they have run ``DATABASE_PREPARE_THRESHOLD`` times on a connection.
- Events whose item has no content vector yet are stored with ``folded = false`` and folded in
  by the ``on_item_vectors_ready`` hook (and swept up by the retention task, should a vector land
  between the ingest's read and its commit).
- The access export, every attribute write and every erasure write an audit record (pseudonym
  only, never the client's id) in the same transaction.

Services that sit on the hot path (``events_ingest``) join the caller's transaction, which must
be scoped to the tenant (``TenantAPIView`` requests are); called outside a transaction they open
``tenant_context`` themselves. Either way every statement also filters on ``tenant_id``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.db import connection
from django.utils import timezone

from apps.catalog import selectors as catalog
from apps.core import audit
from apps.core.audit import AuditAction, SystemActor
from apps.core.bound_cursor import bound_cursor
from apps.core.conf import sotto
from apps.core.errors import NotFound
from apps.core.tenant_db import tenant_context, tenant_scope
from apps.modeling.ml.features import feature_config, state_from_history
from apps.profiles.attribute_crypto import AttributeSealer
from apps.profiles.folding import states_fold_events
from apps.profiles.models import EndUser, UserAttribute, UserEvent, UserState
from apps.profiles.state_codec import StateCorrupt, decode_state, encode_state
from apps.profiles.validation import EventIn, invalid_events
from apps.tenancy import keyring
from apps.tenancy.models import Tenant
from apps.tenancy.pseudonyms import event_keys, pseudonymise, pseudonymise_many

logger = logging.getLogger(__name__)

_FEATURES = feature_config()  # the deployment's (``apps.modeling.ml.features.feature_config``)


# --- users and their state rows -------------------------------------------------------------

# Byte strings travel packed into ONE bytea parameter and are sliced in SQL: psycopg's client-side
# quoting of a bytea[] costs microseconds per element in Python (about 4 ms for 1000 event keys, and
# far more for 6 KB states); a single bytea is one C call. 32-byte values are sliced by index.
_LOCK_STATES_BY_PSEUDONYM = """
SELECT u.pseudonym, u.id, s.data FROM profiles_enduser u
JOIN profiles_userstate s ON s.user_id = u.id
WHERE u.tenant_id = %s AND u.pseudonym = ANY(ARRAY(SELECT substring(packed.b FROM 1 + 32 * i FOR 32)
                              FROM (SELECT %s::bytea AS b) AS packed, generate_series(0, length(packed.b) / 32 - 1) AS i))
ORDER BY u.id FOR UPDATE OF s
"""

_CREATE_USERS = """
WITH wanted AS (SELECT substring(packed.b FROM 1 + 32 * i FOR 32) AS p
                FROM (SELECT %s::bytea AS b) AS packed, generate_series(0, length(packed.b) / 32 - 1) AS i),
created AS (
    INSERT INTO profiles_enduser (tenant_id, pseudonym, created_at)
    SELECT %s, p, now() FROM wanted ORDER BY p
    ON CONFLICT (tenant_id, pseudonym) DO NOTHING
    RETURNING id, pseudonym
),
ids AS (
    SELECT id, pseudonym FROM created
    UNION ALL
    SELECT id, pseudonym FROM profiles_enduser WHERE tenant_id = %s AND pseudonym IN (SELECT p FROM wanted)
),
states AS (
    INSERT INTO profiles_userstate (user_id, tenant_id, data, updated_at)
    SELECT id, %s, NULL, now() FROM ids ORDER BY id
    ON CONFLICT (user_id) DO NOTHING
    RETURNING user_id
)
SELECT ids.pseudonym, ids.id FROM ids JOIN states ON states.user_id = ids.id
"""

_LOCK_STATES_BY_ID = """
SELECT user_id, data FROM profiles_userstate
WHERE tenant_id = %s AND user_id = ANY(%s::bigint[])
ORDER BY user_id FOR UPDATE
"""

_UPDATE_STATES = """
UPDATE profiles_userstate AS s
SET data = CASE WHEN v.len < 0 THEN NULL ELSE substring(%s::bytea FROM v.start FOR v.len) END, updated_at = now()
FROM unnest(string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::int[], string_to_array(%s, ',')::int[])
     AS v(user_id, start, len)
WHERE s.user_id = v.user_id AND s.tenant_id = %s
"""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _csv(values: Iterable[int | float]) -> str:
    """Numbers as one comma-joined text that SQL splits with ``string_to_array`` and casts: psycopg
    adapts a Python list element by element (about 20 ms for 1000 datetimes with Django's adapters);
    ``str`` of an int or a float round-trips exactly."""
    return ",".join(map(str, values))


def _pack32(values: Sequence[bytes]) -> bytes:
    assert all(len(v) == 32 for v in values)
    return b"".join(values)


def _create_users(tenant_id: int, pseudonyms: Sequence[bytes]) -> dict[bytes, int]:
    """Create the users (and their empty state rows) that do not exist yet.

    Returns ``pseudonym -> user id`` for the state rows this call inserted: uncommitted rows of
    this transaction, so no other transaction can lock or change them before it ends. A user
    that a concurrent transaction created in the meantime is absent (the caller locks it).
    """
    wanted = sorted(pseudonyms)  # one insertion order for everyone: concurrent creators cannot deadlock
    with bound_cursor() as cursor:
        cursor.execute(_CREATE_USERS, [_pack32(wanted), tenant_id, tenant_id, tenant_id])
        return {bytes(pseudonym): int(user_id) for pseudonym, user_id in cursor.fetchall()}


def _create_or_lock_users(
    tenant_id: int, pseudonyms: Iterable[bytes]
) -> dict[bytes, tuple[int, bytes | None]]:
    """``pseudonym -> (user id, state bytes)`` for users the ingest read did not find, every state row
    locked: created here, or (created by a concurrent transaction meanwhile) locked."""
    wanted = sorted(set(pseudonyms))
    found: dict[bytes, tuple[int, bytes | None]] = {}
    for _ in range(3):
        found.update(
            {pseudonym: (user_id, None) for pseudonym, user_id in _create_users(tenant_id, wanted).items()}
        )
        wanted = [p for p in wanted if p not in found]
        if not wanted:
            return found
        with bound_cursor() as cursor:
            cursor.execute(_LOCK_STATES_BY_PSEUDONYM, [tenant_id, _pack32(wanted)])
            for pseudonym, user_id, data in cursor.fetchall():
                found[bytes(pseudonym)] = (int(user_id), None if data is None else bytes(data))
        wanted = [p for p in wanted if p not in found]
        if not wanted:
            return found
    raise RuntimeError("could not create or lock user state rows")


def _lock_states_by_id(tenant_id: int, user_ids: Iterable[int]) -> dict[int, bytes | None]:
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_STATES_BY_ID, [tenant_id, sorted({int(u) for u in user_ids})])
        return {int(uid): None if data is None else bytes(data) for uid, data in cursor.fetchall()}


def _pack_states(states: dict[int, dict[str, Any] | None]) -> tuple[bytes, list[int], list[int], list[int]]:
    """States as ONE packed bytea plus (user ids, 1-based starts, lengths; -1 = NULL) to slice it in SQL."""
    ids = sorted(states)
    parts: list[bytes] = []
    starts: list[int] = []
    lengths: list[int] = []
    position = 1  # SQL substring() counts from 1
    for user_id in ids:
        state = states[user_id]
        blob = b"" if state is None else encode_state(state)
        starts.append(position)
        lengths.append(-1 if state is None else len(blob))
        parts.append(blob)
        position += len(blob)
    return b"".join(parts), ids, starts, lengths


def _save_states(tenant_id: int, states: dict[int, dict[str, Any] | None]) -> None:
    if not states:
        return
    blob, ids, starts, lengths = _pack_states(states)
    with bound_cursor() as cursor:
        cursor.execute(_UPDATE_STATES, [blob, _csv(ids), _csv(starts), _csv(lengths), tenant_id])


def load_state(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        return decode_state(data)
    except StateCorrupt:
        logger.error("a stored user state is unreadable; it will be rebuilt from events")
        return None


@dataclass(frozen=True)
class _Folds:
    """Events to fold, as columns: user id, item pk, value, epoch seconds, and ``seq``, which orders
    events of the same timestamp (the index in the batch, or the event's row id)."""

    user_ids: np.ndarray
    item_pks: np.ndarray
    values: np.ndarray
    ts: np.ndarray
    seq: np.ndarray

    def where(self, mask: np.ndarray) -> _Folds:
        return _Folds(
            self.user_ids[mask], self.item_pks[mask], self.values[mask], self.ts[mask], self.seq[mask]
        )


def _fold_states(
    folds: _Folds, stored: dict[int, bytes | None], vectors: dict[int, np.ndarray]
) -> tuple[dict[int, dict[str, Any] | None], list[int]]:
    """New states of the users with folds (their stored bytes with the folds in), and the users whose
    state needs a rebuild instead. One pass over all users' events (``apps.profiles.folding``)."""
    if not len(folds.user_ids):
        return {}, []
    user_ids, user_index = np.unique(folds.user_ids, return_inverse=True)
    item_pks, item_index = np.unique(folds.item_pks, return_inverse=True)
    matrix = np.stack([vectors[int(pk)] for pk in item_pks])
    new = states_fold_events(
        [load_state(stored.get(int(user_id))) for user_id in user_ids],
        user_index,
        folds.seq,
        folds.item_pks,
        folds.values,
        folds.ts,
        matrix[item_index],
        _FEATURES,
    )
    states: dict[int, dict[str, Any] | None] = {}
    rebuild: list[int] = []
    for user_id, state in zip(user_ids.tolist(), new, strict=True):
        if state is None:
            rebuild.append(user_id)
        else:
            states[user_id] = state
    return states, rebuild


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    new: int
    duplicates: int
    pending: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# The ingest's first round trip: the users' state rows, locked in id order (so concurrent batches
# cannot deadlock), then the items by the tenant's own ids with their content vectors in pgvector's
# binary form (no text parsing). Item ids travel as one text joined by U+001F, which validation
# refuses inside an id (control characters), and pseudonyms as one packed bytea (see above).
# No row of the catalogue is locked: the event INSERT's foreign-key check takes FOR KEY SHARE later,
# after the state rows, the lock order docs/architecture.md ("Write conflicts") relies on.
_INGEST_READ = """
WITH locked AS (
    SELECT u.pseudonym, u.id, s.data FROM profiles_enduser u
    JOIN profiles_userstate s ON s.user_id = u.id
    WHERE u.tenant_id = %s AND u.pseudonym = ANY(ARRAY(SELECT substring(packed.b FROM 1 + 32 * i FOR 32)
                                  FROM (SELECT %s::bytea AS b) AS packed, generate_series(0, length(packed.b) / 32 - 1) AS i))
    ORDER BY u.id FOR UPDATE OF s
)
SELECT NULL::varchar, pseudonym, id, data FROM locked
UNION ALL
SELECT i.external_id, NULL::bytea, i.id, vector_send(v.embedding)
FROM catalog_item i LEFT JOIN catalog_itemvector v ON v.tenant_id = %s AND v.item_id = i.id
WHERE i.tenant_id = %s AND i.external_id = ANY(string_to_array(%s, chr(31)))
"""

_ID_SEPARATOR = "\x1f"

# The second: insert the events (idempotent on the keyed event id) and write the folded states, but
# only if every event was new. The states were folded on that assumption, which only a resent event
# breaks; then nothing of them is written here and the caller folds just the new events.
_INGEST_WRITE = """
WITH inserted AS (
    INSERT INTO profiles_userevent (tenant_id, user_id, item_id, event_key, type, value, ts, folded)
    SELECT %s, v.user_id, v.item_id, substring(%s::bytea FROM 1 + 32 * (v.n - 1)::int FOR 32), v.type, v.value,
           timestamptz 'epoch' + v.us * interval '1 microsecond', v.folded
    FROM unnest(string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::varchar[],
                string_to_array(%s, ',')::float8[], string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::boolean[])
         WITH ORDINALITY AS v(user_id, item_id, type, value, us, folded, n)
    ON CONFLICT (tenant_id, event_key) DO NOTHING
    RETURNING event_key
),
states AS (
    UPDATE profiles_userstate AS s
    SET data = CASE WHEN v.len < 0 THEN NULL ELSE substring(%s::bytea FROM v.start FOR v.len) END, updated_at = now()
    FROM unnest(string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::int[], string_to_array(%s, ',')::int[])
         AS v(user_id, start, len)
    WHERE s.user_id = v.user_id AND s.tenant_id = %s AND (SELECT count(*) FROM inserted) = %s
)
SELECT event_key FROM inserted
"""


def _vector_from_wire(data: bytes) -> np.ndarray:
    """pgvector's binary form: int16 dimension, int16 unused, then big-endian float32s."""
    return np.frombuffer(data, dtype=">f4", offset=4).astype(np.float32)


def _ingest_read(
    tenant_id: int, pseudonyms: Iterable[bytes], external_ids: Iterable[str]
) -> tuple[dict[str, tuple[int, np.ndarray | None]], dict[bytes, tuple[int, bytes | None]]]:
    """``external id -> (item pk, vector or None)`` and ``pseudonym -> (user id, state bytes)`` (locked)."""
    items: dict[str, tuple[int, np.ndarray | None]] = {}
    users: dict[bytes, tuple[int, bytes | None]] = {}
    with bound_cursor() as cursor:
        cursor.execute(
            _INGEST_READ,
            [
                tenant_id,
                _pack32(sorted(set(pseudonyms))),
                tenant_id,
                tenant_id,
                _ID_SEPARATOR.join(sorted(set(external_ids))),
            ],
        )
        for external_id, pseudonym, pk, data in cursor.fetchall():
            if external_id is None:
                users[bytes(pseudonym)] = (int(pk), None if data is None else bytes(data))
            else:
                items[str(external_id)] = (int(pk), None if data is None else _vector_from_wire(bytes(data)))
    return items, users


def _ingest_write(
    tenant_id: int,
    events: Sequence[EventIn],
    keys: Sequence[bytes],
    user_ids: Sequence[int],
    item_pks: Sequence[int],
    folded: Sequence[bool],
    states: dict[int, dict[str, Any] | None],
) -> set[bytes]:
    """Insert the events; write ``states`` only if every event was new. Returns the keys inserted."""
    blob, state_ids, starts, lengths = _pack_states(states)
    with bound_cursor() as cursor:
        cursor.execute(
            _INGEST_WRITE,
            [
                tenant_id,
                _pack32(keys),
                _csv(user_ids),
                _csv(item_pks),
                ",".join(e.type for e in events),
                _csv(e.value for e in events),
                _csv((e.ts - _EPOCH) // _MICROSECOND for e in events),
                ",".join("t" if f else "f" for f in folded),
                blob,
                _csv(state_ids),
                _csv(starts),
                _csv(lengths),
                tenant_id,
                len(events),
            ],
        )
        return {bytes(row[0]) for row in cursor.fetchall()}


def events_ingest(*, tenant_id: int, events: Sequence[EventIn], total: int | None = None) -> IngestResult:
    """Store a validated batch and fold its new events into the users' states, atomically.

    Unknown items reject the whole batch (``DomainError`` listing their indices) before anything
    is written; items without a content vector yet are accepted and kept pending.

    Two statements whatever the batch size, for users that exist: one read (state rows locked,
    items and their vectors), one write (events, and the folded states when every event is new);
    one more when some users are new, and one more when some events were stored before (a resend).
    """
    if not events:
        return IngestResult(0, 0, 0, 0)
    with tenant_scope(tenant_id):
        pseudonyms = pseudonymise_many(tenant_id=tenant_id, user_refs=(e.user for e in events))
        keys = event_keys(tenant_id=tenant_id, event_ids=(e.event_id for e in events))
        items, users = _ingest_read(tenant_id, pseudonyms.values(), (e.item for e in events))
        unknown = [
            {"index": e.index, "errors": {"item": "no such item in the catalogue"}}
            for e in events
            if e.item not in items
        ]
        if unknown:
            raise invalid_events(
                unknown, total or len(events)
            )  # nothing written (the rollback frees the locks)
        missing = [p for p in set(pseudonyms.values()) if p not in users]
        if missing:
            users.update(_create_or_lock_users(tenant_id, missing))

        user_ids = [users[pseudonyms[e.user]][0] for e in events]
        item_pks = [items[e.item][0] for e in events]
        folded = [items[e.item][1] is not None for e in events]
        vectors = {pk: vector for pk, vector in items.values() if vector is not None}
        stored = dict(users.values())
        n = len(events)
        with_vector = np.fromiter(folded, dtype=bool, count=n)
        batch = _Folds(
            np.fromiter(user_ids, dtype=np.int64, count=n),
            np.fromiter(item_pks, dtype=np.int64, count=n),
            np.fromiter((e.value for e in events), dtype=np.float64, count=n),
            np.fromiter((e.ts.timestamp() for e in events), dtype=np.float64, count=n),
            np.fromiter((e.index for e in events), dtype=np.int64, count=n),
        )
        states, rebuild = _fold_states(batch.where(with_vector), stored, vectors)
        new_keys = _ingest_write(
            tenant_id, events, [keys[e.event_id] for e in events], user_ids, item_pks, folded, states
        )
        if len(new_keys) != n:  # a resend: fold only what is new (the state rows are still locked)
            is_new = np.fromiter((keys[e.event_id] in new_keys for e in events), dtype=bool, count=n)
            states, rebuild = _fold_states(batch.where(with_vector & is_new), stored, vectors)
            _save_states(tenant_id, states)
        if rebuild:
            _rebuild_locked(tenant_id, rebuild)
        pending = sum(
            1
            for e, has_vector in zip(events, folded, strict=True)
            if not has_vector and keys[e.event_id] in new_keys
        )
        return IngestResult(len(events), len(new_keys), len(events) - len(new_keys), pending)


def events_fold_pending(*, tenant_id: int, item_pks: Sequence[int]) -> int:
    """Fold the pending events of these items (their vectors just arrived); returns how many. Idempotent."""
    if not item_pks:
        return 0
    with tenant_context(tenant_id):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT DISTINCT user_id FROM profiles_userevent "
                "WHERE tenant_id = %s AND NOT folded AND item_id = ANY(%s::bigint[])",
                [tenant_id, sorted({int(pk) for pk in item_pks})],
            )
            user_ids = [int(row[0]) for row in cursor.fetchall()]
        if not user_ids:
            return 0
        vectors = catalog.content_vectors(tenant_id, item_pks)
        if not vectors:
            return 0
        stored = _lock_states_by_id(tenant_id, user_ids)
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE profiles_userevent SET folded = true "
                "WHERE tenant_id = %s AND user_id = ANY(%s::bigint[]) AND item_id = ANY(%s::bigint[]) AND NOT folded "
                "RETURNING id, user_id, item_id, value, ts",
                [tenant_id, sorted(stored), sorted(vectors)],
            )
            rows = cursor.fetchall()
        folds = _Folds(
            np.array([int(r[1]) for r in rows], dtype=np.int64),
            np.array([int(r[2]) for r in rows], dtype=np.int64),
            np.array([float(r[3]) for r in rows], dtype=np.float64),
            np.array([r[4].timestamp() for r in rows], dtype=np.float64),
            np.array([int(r[0]) for r in rows], dtype=np.int64),
        )
        states, rebuild = _fold_states(folds, stored, vectors)
        _save_states(tenant_id, states)
        if rebuild:
            _rebuild_locked(tenant_id, rebuild)
        return len(rows)


def events_fold_stale_pending(*, tenant_id: int) -> int:
    """Fold pending events whose items have vectors by now (a vector that landed mid-ingest)."""
    with tenant_context(tenant_id):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT DISTINCT item_id FROM profiles_userevent WHERE tenant_id = %s AND NOT folded",
                [tenant_id],
            )
            pending_items = [int(row[0]) for row in cursor.fetchall()]
        if not pending_items:
            return 0
        ready = sorted(catalog.content_vectors(tenant_id, pending_items))
        return events_fold_pending(tenant_id=tenant_id, item_pks=ready) if ready else 0


def _rebuild_locked(tenant_id: int, user_ids: Sequence[int]) -> None:
    """Recompute these users' states from their stored events; their state rows must be locked."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT user_id, item_id, value, ts FROM profiles_userevent "
            "WHERE tenant_id = %s AND user_id = ANY(%s::bigint[]) ORDER BY user_id, ts, id",
            [tenant_id, sorted(user_ids)],
        )
        rows = cursor.fetchall()
    vectors = catalog.content_vectors(tenant_id, {int(r[1]) for r in rows})
    history: dict[int, list[tuple[int, float, float]]] = {int(u): [] for u in user_ids}
    for user_id, item_pk, value, ts in rows:
        if int(item_pk) in vectors:
            history[int(user_id)].append((int(item_pk), float(value), ts.timestamp()))
    index = {pk: row for row, pk in enumerate(sorted(vectors))}
    matrix = np.stack([vectors[pk] for pk in sorted(vectors)]).astype(np.float64) if vectors else None
    states: dict[int, dict[str, Any] | None] = {}
    for user_id, events in history.items():
        if not events or matrix is None:
            states[user_id] = None
            continue
        items = [e[0] for e in events]
        states[user_id] = state_from_history(
            items,
            np.array([e[1] for e in events], dtype=np.float64),
            np.array([e[2] for e in events], dtype=np.float64),
            matrix,
            _FEATURES,
            item_index=np.array([index[pk] for pk in items], dtype=np.int64),
        )
    _save_states(tenant_id, states)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE profiles_userevent SET folded = (item_id = ANY(%s::bigint[])) "
            "WHERE tenant_id = %s AND user_id = ANY(%s::bigint[]) AND folded IS DISTINCT FROM (item_id = ANY(%s::bigint[]))",
            [sorted(vectors), tenant_id, sorted(user_ids), sorted(vectors)],
        )


def user_state_rebuild(tenant_id: int, pseudonym_id: int) -> None:
    """Recompute one user's state (``pseudonym_id`` = ``EndUser`` pk) from every stored event."""
    with tenant_context(tenant_id):
        if _lock_states_by_id(tenant_id, [pseudonym_id]):
            _rebuild_locked(tenant_id, [pseudonym_id])


def user_states_rebuild_all(tenant_id: int) -> int:
    """Recompute every user's state of the tenant from its events (after a feature layout change);
    one short transaction per user. Returns how many states were rebuilt."""
    with tenant_context(tenant_id), connection.cursor() as cursor:
        cursor.execute(
            "SELECT user_id FROM profiles_userstate WHERE tenant_id = %s ORDER BY user_id", [tenant_id]
        )
        user_ids = [int(row[0]) for row in cursor.fetchall()]
    for user_id in user_ids:
        user_state_rebuild(tenant_id, user_id)
    return len(user_ids)


# --- attributes, export, erasure ------------------------------------------------------------


def _user_key(tenant_id: int, user: EndUser, *, create: bool) -> bytes | None:
    """The user's key (unwrapped); a new one is made and stored when ``create`` and there is none."""
    if user.wrapped_key is None or user.key_version is None:
        if not create:
            return None
        raw = keyring.user_key_new()
        wrapped = keyring.user_key_wrap(tenant_id=tenant_id, subject=bytes(user.pseudonym), key=raw)
        user.wrapped_key, user.key_version = wrapped.blob, wrapped.version
        user.save(update_fields=["wrapped_key", "key_version"])
        return raw
    for attempt in (1, 2):
        try:
            return keyring.user_key_unwrap(
                tenant_id=tenant_id,
                subject=bytes(user.pseudonym),
                wrapped=keyring.WrappedKey(int(user.key_version), bytes(user.wrapped_key)),
            )
        except keyring.KeyVersionRetired:
            if attempt == 2:
                raise
            # A rotation re-wrapped this key and retired the old version since we read the row.
            user.refresh_from_db(fields=["wrapped_key", "key_version"])
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class AttributesResult:
    created_user: bool
    stored: int


def user_attributes_put(
    *, tenant_id: int, user_ref: str, attributes: dict[str, Any], actor: str
) -> AttributesResult:
    """Replace the user's attributes (validated by ``validate_attributes``), each sealed on its own."""
    with tenant_context(tenant_id):
        pseudonym = pseudonymise(tenant_id=tenant_id, user_ref=user_ref)
        user = (
            EndUser.objects.select_for_update(no_key=True)
            .filter(tenant_id=tenant_id, pseudonym=pseudonym)
            .first()
        )
        created = user is None
        if user is None:
            _create_users(tenant_id, [pseudonym])
            user = EndUser.objects.select_for_update(no_key=True).get(
                tenant_id=tenant_id, pseudonym=pseudonym
            )
        key = _user_key(tenant_id, user, create=True)
        assert key is not None
        sealer = AttributeSealer(tenant_id=tenant_id, pseudonym=pseudonym, user_key=key)
        UserAttribute.objects.filter(tenant_id=tenant_id, user=user).delete()
        now = timezone.now()
        rows = []
        for name, value in attributes.items():
            tag, blob = sealer.seal(name, value)
            rows.append(
                UserAttribute(tenant_id=tenant_id, user=user, name_tag=tag, ciphertext=blob, updated_at=now)
            )
        UserAttribute.objects.bulk_create(rows)
        audit.record(
            tenant_id=tenant_id,
            actor=actor,
            action=AuditAction.END_USER_ATTRIBUTES_REPLACE,
            target_type="end_user",
            target_id=pseudonym.hex(),
            details={"attributes": len(rows), "created_user": created},
        )
    return AttributesResult(created_user=created, stored=len(rows))


MAX_EXPORT_EVENTS_PAGE = 10_000


def user_export(
    *, tenant_id: int, user_ref: str, actor: str, events_offset: int = 0, events_limit: int = 1000
) -> dict[str, Any]:
    """Everything held about the user: decrypted attributes, events (one page), state summary.

    Audited (every attribute decryption happens here and only here). ``NotFound`` for a user the
    tenant holds nothing about, including one that has been erased.
    """
    events_limit = max(1, min(int(events_limit), MAX_EXPORT_EVENTS_PAGE))
    events_offset = max(0, int(events_offset))
    with tenant_context(tenant_id):
        pseudonym = pseudonymise(tenant_id=tenant_id, user_ref=user_ref)
        user = EndUser.objects.filter(tenant_id=tenant_id, pseudonym=pseudonym).first()
        if user is None:
            raise NotFound("no data is held about this user")
        attributes: dict[str, Any] = {}
        failures = 0
        stored = list(
            UserAttribute.objects.filter(tenant_id=tenant_id, user=user).values_list("name_tag", "ciphertext")
        )
        if stored:
            key = _user_key(tenant_id, user, create=False)
            sealer = (
                None
                if key is None
                else AttributeSealer(tenant_id=tenant_id, pseudonym=pseudonym, user_key=key)
            )
            for tag, blob in stored:
                try:
                    if sealer is None:
                        raise keyring.DecryptionFailed("no user key")
                    name, value = sealer.open(bytes(tag), bytes(blob))
                except keyring.DecryptionFailed:
                    failures += 1
                    continue
                attributes[name] = value
            attributes = dict(sorted(attributes.items()))
        if failures:
            logger.error(
                "access export: %d attribute(s) failed authentication (moved or altered ciphertext)", failures
            )
        events_total = UserEvent.objects.filter(tenant_id=tenant_id, user=user).count()
        page = list(
            UserEvent.objects.filter(tenant_id=tenant_id, user=user)
            .order_by("ts", "id")
            .values_list("event_key", "item_id", "type", "value", "ts", "folded")[
                events_offset : events_offset + events_limit
            ]
        )
        state_row = getattr(user, "state", None)
        state = load_state(None if state_row is None else state_row.data)
        item_ids = {int(row[1]) for row in page} | set((state or {}).get("last_items", []))
        external = catalog.external_ids_by_pks(tenant_id, item_ids)
        audit.record(
            tenant_id=tenant_id,
            actor=actor,
            action=AuditAction.END_USER_EXPORT,
            target_type="end_user",
            target_id=pseudonym.hex(),
            details={
                "attributes_decrypted": len(attributes),
                "attribute_failures": failures,
                "events": len(page),
            },
        )
    next_offset = events_offset + len(page)
    return {
        "user": user_ref,
        "pseudonym": pseudonym.hex(),
        "created_at": user.created_at.isoformat(),
        "attributes": attributes,
        "attribute_integrity_failures": failures,
        "events": [
            {
                "event_id_hash": bytes(key).hex(),
                "item": external.get(int(item_pk)),
                "type": kind,
                "value": value,
                "timestamp": ts.astimezone(UTC).isoformat(),
                "folded": is_folded,
            }
            for key, item_pk, kind, value, ts, is_folded in page
        ],
        "events_total": events_total,
        "events_next_offset": next_offset if next_offset < events_total else None,
        "state": _state_summary(state, external),
    }


def _state_summary(state: dict[str, Any] | None, external: dict[int, str]) -> dict[str, Any] | None:
    if state is None:
        return None
    return {
        "events_folded": int(state["n_events"]),
        "newest_event_at": datetime.fromtimestamp(float(state["anchor_time"]), tz=UTC).isoformat(),
        "rating_sum": float(state["rating_sum"]),
        "channel_weights": [float(w) for w in state["weight_sum"]],
        "content_dim": int(state["content_sum"].shape[1]),
        "last_items": [external.get(int(pk)) for pk in state["last_items"]],
    }


def user_erase(*, tenant_id: int, user_ref: str, actor: str) -> dict[str, Any]:
    """Delete the user's events, state, attributes and key; return a receipt. ``NotFound`` if unknown.

    Crypto-shredding: the wrapped user key lives only in the deleted ``EndUser`` row, so any
    copy of the attribute ciphertexts (dead tuples, WAL, backups) can no longer be opened once
    that row is gone from them too (docs/privacy-model.md says what that takes).
    """
    with tenant_context(tenant_id):
        pseudonym = pseudonymise(tenant_id=tenant_id, user_ref=user_ref)
        user_id = (
            EndUser.objects.filter(tenant_id=tenant_id, pseudonym=pseudonym)
            .values_list("pk", flat=True)
            .first()
        )
        if user_id is None:
            raise NotFound("no data is held about this user")
        _lock_states_by_id(tenant_id, [user_id])  # same lock order as ingest: state row first
        had_key = (
            EndUser.objects.select_for_update()
            .filter(pk=user_id, tenant_id=tenant_id)
            .values_list("wrapped_key", flat=True)
            .first()
            is not None
        )
        _, per_model = EndUser.objects.filter(pk=user_id, tenant_id=tenant_id).delete()
        deleted = {
            "events": per_model.get(UserEvent._meta.label, 0),
            "attributes": per_model.get(UserAttribute._meta.label, 0),
            "state": per_model.get(UserState._meta.label, 0),
            "user": per_model.get(EndUser._meta.label, 0),
        }
        receipt_id = uuid.uuid4().hex
        erased_at = timezone.now()
        audit.record(
            tenant_id=tenant_id,
            actor=actor,
            action=AuditAction.END_USER_ERASE,
            target_type="end_user",
            target_id=pseudonym.hex(),
            details={"receipt_id": receipt_id, "deleted": deleted, "key_destroyed": True, "had_key": had_key},
        )
    return {
        "user": user_ref,
        "erased_at": erased_at.isoformat(),
        "deleted": deleted,
        "key_destroyed": True,
        "receipt_id": receipt_id,
    }


# --- retention ------------------------------------------------------------------------------


def retention_days(tenant_settings: dict[str, Any] | None) -> int:
    """``event_retention_days`` of the tenant (a positive integer), else the platform default."""
    default = sotto().event_retention_days
    value = (tenant_settings or {}).get("event_retention_days")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        logger.warning("event_retention_days must be a positive integer; using the default of %d", default)
        return default
    return value


@dataclass(frozen=True)
class RetentionResult:
    days: int
    deleted: int
    users_rebuilt: int


def events_apply_retention(
    *, tenant_id: int, now: datetime | None = None, batch_events: int = 10_000
) -> RetentionResult:
    """Delete the tenant's events older than its retention and rebuild the affected users' states.

    Works in batches (one transaction each: pick users with old events, lock their states, delete,
    rebuild), so it never holds many locks for long. Audited once per run that deleted anything.
    """
    settings_value = Tenant.objects.filter(pk=tenant_id).values_list("settings", flat=True).first()
    days = retention_days(settings_value)
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted = rebuilt = 0
    while True:
        with tenant_context(tenant_id):
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT user_id FROM profiles_userevent WHERE tenant_id = %s AND ts < %s LIMIT %s",
                    [tenant_id, cutoff, batch_events],
                )
                user_ids = sorted({int(row[0]) for row in cursor.fetchall()})
            if not user_ids:
                break
            locked = sorted(_lock_states_by_id(tenant_id, user_ids))
            with connection.cursor() as cursor:
                cursor.execute(
                    "DELETE FROM profiles_userevent WHERE tenant_id = %s AND user_id = ANY(%s::bigint[]) AND ts < %s",
                    [tenant_id, user_ids, cutoff],
                )
                deleted += cursor.rowcount
            if locked:
                _rebuild_locked(tenant_id, locked)
                rebuilt += len(locked)
    if deleted:
        with tenant_context(tenant_id):
            audit.record(
                tenant_id=tenant_id,
                actor=SystemActor.TASK_APPLY_RETENTION,
                action=AuditAction.EVENTS_RETENTION,
                target_type="tenant",
                target_id=str(tenant_id),
                details={
                    "days": days,
                    "cutoff": cutoff.isoformat(),
                    "deleted": deleted,
                    "users_rebuilt": rebuilt,
                },
            )
    return RetentionResult(days=days, deleted=deleted, users_rebuilt=rebuilt)
