"""``EndUser`` rows as a store of wrapped user keys, so tenant key rotation can re-wrap them."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection

from apps.tenancy.keyring import WrappedKey, WrappedRow


class EndUserKeyStore:
    name = "profiles.enduser"

    def lock_wrapped(self, *, tenant_id: int, versions: Sequence[int], limit: int) -> list[WrappedRow]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, pseudonym, key_version, wrapped_key FROM profiles_enduser "
                "WHERE tenant_id = %s AND key_version = ANY(%s::int[]) ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                [tenant_id, list(versions), limit],
            )
            return [
                WrappedRow(int(row_id), bytes(subject), WrappedKey(int(version), bytes(blob)))
                for row_id, subject, version, blob in cursor.fetchall()
            ]

    def save_wrapped(self, *, tenant_id: int, rows: Sequence[WrappedRow]) -> None:
        if not rows:
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE profiles_enduser AS u SET wrapped_key = v.blob, key_version = v.version "
                "FROM unnest(%s::bigint[], %s::int[], %s::bytea[]) AS v(id, version, blob) "
                "WHERE u.id = v.id AND u.tenant_id = %s",
                [
                    [r.row_id for r in rows],
                    [r.key.version for r in rows],
                    [r.key.blob for r in rows],
                    tenant_id,
                ],
            )

    def count_wrapped(self, *, tenant_id: int, versions: Sequence[int]) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM profiles_enduser WHERE tenant_id = %s AND key_version = ANY(%s::int[])",
                [tenant_id, list(versions)],
            )
            row = cursor.fetchone()
        return int(row[0]) if row else 0
