"""Signed checkpoints: over (tenant, sequence, head hash, time), in the database and the external sink."""

from __future__ import annotations

import json
import os
import stat

import pytest
from django.db import transaction

from apps.audit import signing
from apps.audit.chain import (
    generate_private_key,
    key_id,
    load_public_key_pem,
    private_key_to_pem,
    verify_checkpoint,
)
from apps.audit.models import AuditCheckpoint
from apps.audit.selectors import audit_checkpoints, audit_public_key
from apps.audit.services import (
    audit_append,
    audit_checkpoint,
    audit_checkpoint_all,
    row_to_checkpoint,
)
from apps.audit.sinks import DirectorySink, SinkError, checkpoint_file_name
from apps.core.tenant_db import tenant_context


def _head(persona):
    from apps.audit.models import AuditEvent

    with tenant_context(persona.tenant.id):
        return (
            AuditEvent.objects.filter(tenant_id=persona.tenant.id)
            .order_by("-sequence")
            .values_list("sequence", "hash")
            .first()
        )


def test_a_checkpoint_signs_the_current_head_and_reaches_db_and_sink(tenant_a, audit_sink_dir):
    cp = audit_checkpoint(tenant_id=tenant_a.tenant.id)
    assert cp is not None
    assert (cp["sequence"], cp["head_hash"]) == _head(tenant_a)
    assert cp["tenant"] == tenant_a.slug and cp["kind"] == "periodic"
    public = load_public_key_pem(audit_public_key().public_key_pem.encode())
    assert verify_checkpoint(public, cp)
    with tenant_context(tenant_a.tenant.id):
        assert [row_to_checkpoint(r) for r in audit_checkpoints(tenant_a.tenant.id)] == [cp]
    files = list((audit_sink_dir / "tenant" / tenant_a.slug).glob("*.json"))
    assert [json.loads(f.read_text()) for f in files] == [cp]


def test_an_unchanged_head_is_not_signed_again_until_it_moves(tenant_a):
    assert audit_checkpoint(tenant_id=tenant_a.tenant.id) is not None
    assert audit_checkpoint(tenant_id=tenant_a.tenant.id) is None
    audit_append(tenant_id=tenant_a.tenant.id, actor="system", action="test.move")
    again = audit_checkpoint(tenant_id=tenant_a.tenant.id)
    assert again is not None and again["sequence"] == _head(tenant_a)[0]


def test_the_sink_copy_is_written_only_when_the_transaction_commits(tenant_a, audit_sink_dir):
    with transaction.atomic():
        audit_checkpoint(tenant_id=tenant_a.tenant.id)
        assert not (audit_sink_dir / "tenant" / tenant_a.slug).exists()
        transaction.set_rollback(True)
    assert not (audit_sink_dir / "tenant" / tenant_a.slug).exists()
    with tenant_context(tenant_a.tenant.id):
        assert not AuditCheckpoint.objects.filter(tenant_id=tenant_a.tenant.id).exists()


def test_it_refuses_to_sign_a_head_its_own_transaction_wrote(tenant_a):
    with pytest.raises(RuntimeError, match="own transaction"), transaction.atomic():
        audit_append(tenant_id=tenant_a.tenant.id, actor="system", action="test.uncommitted")
        audit_checkpoint(tenant_id=tenant_a.tenant.id)


def test_checkpoint_all_signs_every_moved_chain_and_is_idempotent(tenant_a, tenant_b):
    # Other tests in this session leave deliberately broken chains behind: those are skipped and
    # counted, and must not stop the healthy ones from being signed.
    first = audit_checkpoint_all()
    assert first["signed"] >= 2
    for persona in (tenant_a, tenant_b):
        with tenant_context(persona.tenant.id):
            assert list(
                AuditCheckpoint.objects.filter(tenant_id=persona.tenant.id).values_list("sequence", flat=True)
            ) == [_head(persona)[0]]
    second = audit_checkpoint_all()
    assert second["signed"] == 0 and second["broken"] == first["broken"]
    assert audit_checkpoint(tenant_id=tenant_a.tenant.id) is None


def test_checkpoint_all_puts_back_checkpoints_missing_from_the_sink(tenant_a, audit_sink_dir):
    cp = audit_checkpoint(tenant_id=tenant_a.tenant.id)
    assert cp is not None
    path = audit_sink_dir / "tenant" / tenant_a.slug / checkpoint_file_name(cp)
    path.unlink()  # e.g. the sink was down when the checkpoint committed
    counts = audit_checkpoint_all()
    assert counts["resynced"] >= 1
    assert json.loads(path.read_text()) == cp


def test_the_beat_task_is_registered_under_its_scheduled_name(live_db):
    from celery import current_app

    import apps.audit.tasks  # noqa: F401 - registers the task
    from config.schedules import beat_schedule

    assert "sotto.audit.checkpoint_all" in current_app.tasks
    assert beat_schedule()["audit-checkpoint"]["task"] == "sotto.audit.checkpoint_all"


@pytest.mark.worker
def test_the_real_worker_runs_the_checkpoint_task(celery_worker_proc, tenant_a):
    from django.conf import settings

    from apps.audit.tasks import checkpoint_all
    from tests.support import wait_for

    checkpoint_all.apply_async(queue=settings.SOTTO["QUEUE_PREFIX"] + "default")

    def signed() -> bool:
        with tenant_context(tenant_a.tenant.id):
            return AuditCheckpoint.objects.filter(tenant_id=tenant_a.tenant.id).exists()

    wait_for(signed, timeout=90, message="the worker signed no checkpoint")


# --- the sink -------------------------------------------------------------------------------------


def _cp(**overrides):
    cp = {
        "kind": "periodic",
        "tenant": "acme",
        "sequence": 3,
        "head_hash": "a" * 64,
        "signed_at": "2025-01-01T00:00:00.000000Z",
        "key_id": "0" * 16,
        "signature": "c2ln" * 22,
    }
    cp.update(overrides)
    return cp


def test_the_directory_sink_is_write_once(tmp_path):
    sink = DirectorySink(tmp_path)
    sink.write(_cp())
    sink.write(_cp())  # identical: idempotent
    path = tmp_path / "tenant" / "acme" / checkpoint_file_name(_cp())
    path.write_text(path.read_text().replace("a" * 64, "b" * 64))
    with pytest.raises(SinkError, match="refusing to overwrite"):
        sink.write(_cp())
    assert sink.read("acme") == [_cp(head_hash="b" * 64)]
    assert sink.read(None) == []


def test_the_directory_sink_refuses_odd_names_and_unreadable_files(tmp_path):
    sink = DirectorySink(tmp_path)
    with pytest.raises(SinkError):
        sink.write(_cp(tenant="../escape"))
    (tmp_path / "platform").mkdir()
    (tmp_path / "platform" / "000000000000001-x.json").write_text("{not json")
    with pytest.raises(SinkError, match="unreadable"):
        sink.read(None)
    with pytest.raises(SinkError, match="empty"):
        DirectorySink("")


# --- the signing key ------------------------------------------------------------------------------


def test_a_configured_pem_key_is_used_for_signing(settings, tenant_a):
    key = generate_private_key()
    settings.SOTTO = {
        **settings.SOTTO,
        "AUDIT_SIGNING_KEY": private_key_to_pem(key).decode().replace("\n", "\\n"),
    }
    assert audit_public_key().key_id == key_id(key.public_key())
    cp = audit_checkpoint(tenant_id=tenant_a.tenant.id)
    assert cp is not None and cp["key_id"] == key_id(key.public_key())


def test_the_embedded_default_key_is_created_private_and_reused(settings, tmp_path, caplog):
    settings.SOTTO = {**settings.SOTTO, "AUDIT_SIGNING_KEY": None, "KEY_DIR": tmp_path / "keys"}
    with caplog.at_level("WARNING", logger="apps.audit.signing"):
        first = audit_public_key()
    path = tmp_path / "keys" / signing.EMBEDDED_KEY_NAME
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "generated" in caplog.text and "SOTTO_AUDIT_SIGNING_KEY" in caplog.text
    signing._cache.clear()
    assert audit_public_key() == first  # read back, not regenerated


def test_after_a_key_rotation_old_checkpoints_verify_only_with_the_old_public_key_listed(settings, tenant_a):
    from apps.audit.chain import public_key_to_pem
    from apps.audit.services import audit_verify_live

    old_key, new_key = generate_private_key(), generate_private_key()
    settings.SOTTO = {**settings.SOTTO, "AUDIT_SIGNING_KEY": private_key_to_pem(old_key).decode()}
    assert audit_checkpoint(tenant_id=tenant_a.tenant.id) is not None
    audit_append(tenant_id=tenant_a.tenant.id, actor="system", action="test.rotation")

    # Rotated without listing the old key: the old checkpoint cannot be checked, so nothing is signed.
    settings.SOTTO = {**settings.SOTTO, "AUDIT_SIGNING_KEY": private_key_to_pem(new_key).decode()}
    result = audit_verify_live(tenant_a.tenant)
    assert not result.ok and "SOTTO_AUDIT_PREVIOUS_PUBLIC_KEYS" in result.reason
    with pytest.raises(Exception, match="SOTTO_AUDIT_PREVIOUS_PUBLIC_KEYS"):
        audit_checkpoint(tenant_id=tenant_a.tenant.id)

    # With the old public key listed, the chain verifies and the new key signs on.
    settings.SOTTO = {
        **settings.SOTTO,
        "AUDIT_PREVIOUS_PUBLIC_KEYS": public_key_to_pem(old_key.public_key()).decode(),
    }
    assert audit_verify_live(tenant_a.tenant).ok
    cp = audit_checkpoint(tenant_id=tenant_a.tenant.id)
    assert cp is not None and cp["key_id"] == key_id(new_key.public_key())
    assert audit_verify_live(tenant_a.tenant).checkpoints == 2


def test_the_chain_head_selector_reports_head_and_latest_checkpoint(tenant_a):
    from apps.audit.selectors import audit_chain_head

    with tenant_context(tenant_a.tenant.id):
        before = audit_chain_head(tenant_a.tenant.id)
    assert before.sequence == _head(tenant_a)[0] and before.checkpoint_sequence is None
    cp = audit_checkpoint(tenant_id=tenant_a.tenant.id)
    assert cp is not None
    audit_append(tenant_id=tenant_a.tenant.id, actor="system", action="test.after-checkpoint")
    with tenant_context(tenant_a.tenant.id):
        after = audit_chain_head(tenant_a.tenant.id)
    assert (after.sequence, after.hash) == _head(tenant_a)
    assert (after.checkpoint_sequence, after.checkpoint_signed_at) == (cp["sequence"], cp["signed_at"])
