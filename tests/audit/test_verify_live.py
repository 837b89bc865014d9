"""``audit_verify`` / audit_verify_live: the stored chain from sequence 1 against every signed
checkpoint. Since nobody may UPDATE the table, tampering here is done the way an attacker with
the database superuser would: triggers off (``session_replication_role = replica``)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.audit.chain import generate_private_key, sign_checkpoint
from apps.audit.services import audit_append, audit_checkpoint, audit_verify_live
from tests.audit.conftest import tamper_as_superuser


def _verify(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("audit_verify", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


@pytest.fixture
def chain(tenant_a):
    """Tenant A: 2 setup events + 4 more, a checkpoint at 4, head at 6."""
    for i in range(2):
        audit_append(tenant_id=tenant_a.tenant.id, actor="system", action="test.before", details={"i": i})
    audit_checkpoint(tenant_id=tenant_a.tenant.id)
    for i in range(2):
        audit_append(tenant_id=tenant_a.tenant.id, actor="system", action="test.after", details={"i": i})
    return tenant_a


def test_a_clean_chain_verifies(chain):
    code, out = _verify("--tenant", chain.slug)
    assert code == 0
    assert out.startswith(f"OK: tenant {chain.slug}, events 6 (head sequence 6), checkpoints 1 verified")


def test_the_platform_chain_verifies(live_db):
    audit_append(tenant_id=None, actor="system", action="test.platform-verify")
    code, out = _verify("--platform")
    assert code == 0 and out.startswith("OK: tenant <platform>")


def test_an_unknown_tenant_is_a_usage_error(live_db):
    with pytest.raises(CommandError, match="no tenant"):
        call_command("audit_verify", "--tenant", "no-such-tenant-xyz")


def test_an_edited_row_fails_at_its_sequence(chain, superuser_conn):
    changed = tamper_as_superuser(
        superuser_conn,
        "UPDATE audit_auditevent SET details = '{\"i\": 99}' WHERE tenant_id = %s AND sequence = 5",
        [chain.tenant.id],
    )
    assert changed == 1
    code, out = _verify("--tenant", chain.slug)
    assert code == 1
    assert out.strip() == "FAIL at sequence 5: hash mismatch: event content was altered"


def test_a_rehashed_edit_before_a_checkpoint_contradicts_the_signature(chain, superuser_conn):
    # The attacker recomputes the hashes of 3..6 so every link is consistent again: only the
    # signed checkpoint at 4 (which they cannot re-sign) gives them away.
    from apps.audit.chain import compute_hash
    from apps.audit.models import AuditEvent
    from apps.audit.services import row_to_event
    from apps.core.tenant_db import tenant_context

    with tenant_context(chain.tenant.id):
        events = [
            row_to_event(r) for r in AuditEvent.objects.filter(tenant_id=chain.tenant.id).order_by("sequence")
        ]
    events[2]["actor"] = "someone-else"
    for i in range(2, len(events)):
        if i > 2:
            events[i]["prev_hash"] = events[i - 1]["hash"]
        events[i]["hash"] = compute_hash(events[i])
        tamper_as_superuser(
            superuser_conn,
            "UPDATE audit_auditevent SET actor = %s, prev_hash = %s, hash = %s WHERE tenant_id = %s AND sequence = %s",
            [
                events[i]["actor"],
                events[i]["prev_hash"],
                events[i]["hash"],
                chain.tenant.id,
                events[i]["sequence"],
            ],
        )
    code, out = _verify("--tenant", chain.slug)
    assert code == 1
    assert out.startswith("FAIL at sequence 4: event does not match the signed checkpoint")


def test_deleted_signed_events_are_detected(chain, superuser_conn):
    tamper_as_superuser(
        superuser_conn,
        "DELETE FROM audit_auditevent WHERE tenant_id = %s AND sequence >= 4",
        [chain.tenant.id],
    )
    result = audit_verify_live(chain.tenant)
    assert not result.ok and result.bad_sequence == 4
    assert "events deleted" in result.reason


def test_a_deleted_middle_event_breaks_the_links(chain, superuser_conn):
    tamper_as_superuser(
        superuser_conn,
        "DELETE FROM audit_auditevent WHERE tenant_id = %s AND sequence = 2",
        [chain.tenant.id],
    )
    result = audit_verify_live(chain.tenant)
    assert (result.ok, result.bad_sequence) == (False, 2)
    assert "sequence gap" in result.reason


def test_checkpoints_deleted_from_the_database_still_count_from_the_sink(chain, superuser_conn):
    tamper_as_superuser(
        superuser_conn, "DELETE FROM audit_auditcheckpoint WHERE tenant_id = %s", [chain.tenant.id]
    )
    tamper_as_superuser(
        superuser_conn,
        "DELETE FROM audit_auditevent WHERE tenant_id = %s AND sequence >= 3",
        [chain.tenant.id],
    )
    result = audit_verify_live(chain.tenant)
    assert (result.ok, result.bad_sequence) == (False, 3)


def test_a_forged_checkpoint_in_the_sink_is_rejected(chain, audit_sink_dir):
    forged = sign_checkpoint(generate_private_key(), chain.slug, 6, "e" * 64, "2030-01-01T00:00:00.000000Z")
    directory = audit_sink_dir / "tenant" / chain.slug
    (directory / "000000000000006-forged.json").write_text(json.dumps(forged))
    code, out = _verify("--tenant", chain.slug)
    assert code == 1
    assert out.startswith("FAIL at sequence 6: checkpoint is signed by key id")


def test_an_altered_checkpoint_file_is_rejected(chain, audit_sink_dir):
    [path] = (audit_sink_dir / "tenant" / chain.slug).glob("*.json")
    cp = json.loads(path.read_text())
    cp["head_hash"] = "d" * 64
    path.write_text(json.dumps(cp))
    code, out = _verify("--tenant", chain.slug)
    assert code == 1
    assert out.startswith("FAIL at sequence 4: invalid checkpoint signature")
