"""The key hierarchy: master key handling, tenant keys, user-key wrapping and rotation without failed reads."""

from __future__ import annotations

import base64
import os
import threading

import pytest
from django.core.management import call_command
from django.db import connection

from apps.core.tenant_db import dangerously_as_platform, tenant_context
from apps.profiles.models import EndUser
from apps.profiles.services import user_attributes_put, user_export
from apps.tenancy import keyring
from apps.tenancy.models import TenantKey
from apps.tenancy.pseudonyms import pseudonymise
from tests.support import make_tenant, wait_for

KEY = bytes(range(32))


@pytest.fixture
def fresh_keys():
    """Forget cached keys before and after, so a test's master-key changes cannot leak into others."""
    keyring.forget_cached_keys()
    yield
    keyring.forget_cached_keys()


@pytest.mark.parametrize(
    "text",
    [
        KEY.hex(),
        KEY.hex().upper(),
        base64.b64encode(KEY).decode(),
        base64.urlsafe_b64encode(KEY).decode().rstrip("="),
        f"  {base64.b64encode(KEY).decode()}\n",
    ],
)
def test_master_key_accepts_hex_and_base64(text):
    assert keyring.parse_master_key(text, source="test") == KEY


@pytest.mark.parametrize(
    "text", ["", "short", KEY.hex()[:-2], base64.b64encode(KEY + b"x").decode(), "é" * 44]
)
def test_master_key_refuses_anything_but_32_bytes(text):
    with pytest.raises(keyring.KeyringError, match="32 bytes"):
        keyring.parse_master_key(text, source="test")


def test_the_embedded_default_generates_a_0600_master_key_once_and_says_so(
    settings, tmp_path, capsys, fresh_keys
):
    settings.SOTTO = {**settings.SOTTO, "MASTER_KEY": None, "KEY_DIR": tmp_path / "keys"}
    first = keyring.master_key()
    path = tmp_path / "keys" / "master.key"
    assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
    assert "generated a new master key" in capsys.readouterr().err
    keyring.forget_cached_keys()
    assert keyring.master_key() == first
    assert "generated" not in capsys.readouterr().err
    assert os.listdir(tmp_path / "keys") == ["master.key"]  # no temporary file left behind


def test_the_master_key_comes_from_the_setting_when_given(settings, fresh_keys, tmp_path):
    settings.SOTTO = {**settings.SOTTO, "MASTER_KEY": KEY.hex(), "KEY_DIR": tmp_path}
    assert keyring.master_key() == KEY
    assert not (tmp_path / "master.key").exists()


def test_a_new_tenant_gets_a_pseudonym_key_and_a_first_encryption_key(tenant_a):
    with tenant_context(tenant_a.tenant.id):
        rows = sorted(
            TenantKey.objects.filter(tenant=tenant_a.tenant).values_list("purpose", "version", "status")
        )
    assert rows == [("enc", 1, "active"), ("pseudonym", 1, "active")]


def test_a_wrong_master_key_fails_loudly_naming_both_key_ids(settings, tenant_a, fresh_keys):
    tenant_id = tenant_a.tenant.id
    with tenant_context(tenant_id):
        keyring.pseudonym_key(tenant_id)
    settings.SOTTO = {**settings.SOTTO, "MASTER_KEY": os.urandom(32).hex()}
    keyring.forget_cached_keys()
    with tenant_context(tenant_id), pytest.raises(keyring.KeyringError, match="wrapped under master key"):
        keyring.pseudonym_key(tenant_id)


def test_a_tenant_key_copied_to_another_tenant_does_not_unwrap(tenant_a, tenant_b, fresh_keys):
    with tenant_context(tenant_a.tenant.id):
        stolen = TenantKey.objects.get(tenant=tenant_a.tenant, purpose="pseudonym").wrapped
    assert stolen is not None
    with tenant_context(tenant_b.tenant.id):
        TenantKey.objects.filter(tenant=tenant_b.tenant, purpose="pseudonym").update(wrapped=stolen)
        with pytest.raises(keyring.KeyringError, match="does not unwrap"):
            keyring.pseudonym_key(tenant_b.tenant.id)


def test_a_user_key_only_unwraps_for_its_own_subject_and_tenant(tenant_a, tenant_b):
    raw = keyring.user_key_new()
    with tenant_context(tenant_a.tenant.id):
        wrapped = keyring.user_key_wrap(tenant_id=tenant_a.tenant.id, subject=b"s" * 32, key=raw)
        assert (
            keyring.user_key_unwrap(tenant_id=tenant_a.tenant.id, subject=b"s" * 32, wrapped=wrapped) == raw
        )
        with pytest.raises(keyring.DecryptionFailed):
            keyring.user_key_unwrap(tenant_id=tenant_a.tenant.id, subject=b"t" * 32, wrapped=wrapped)
    with tenant_context(tenant_b.tenant.id), pytest.raises(keyring.DecryptionFailed):
        keyring.user_key_unwrap(tenant_id=tenant_b.tenant.id, subject=b"s" * 32, wrapped=wrapped)


def test_a_tenant_created_before_the_keyring_gets_its_keys_on_first_use(tenant_a):
    tenant_id = tenant_a.tenant.id
    with tenant_context(tenant_id):
        TenantKey.objects.filter(tenant_id=tenant_id).delete()
    keyring.forget_cached_keys()
    with tenant_context(tenant_id):
        assert len(keyring.pseudonym_key(tenant_id)) == 32
        assert keyring.user_key_wrap(tenant_id=tenant_id, subject=b"x" * 32, key=KEY).version == 1


def _users_with_attributes(tenant_id, count):
    refs = [f"user-{n}" for n in range(count)]
    for n, ref in enumerate(refs):
        user_attributes_put(
            tenant_id=tenant_id, user_ref=ref, attributes={"n": n, "tier": "gold"}, actor="test"
        )
    return refs


def _versions(tenant_id):
    with tenant_context(tenant_id):
        return sorted(
            TenantKey.objects.filter(tenant_id=tenant_id, purpose="enc").values_list("version", "status")
        )


def _key_versions_in_use(tenant_id):
    with tenant_context(tenant_id):
        return sorted(set(EndUser.objects.filter(tenant_id=tenant_id).values_list("key_version", flat=True)))


def test_rotation_rewraps_every_user_key_and_retires_the_old_version_with_reads_working_at_each_step(
    live_db, fresh_keys
):
    persona = make_tenant("rot")
    tenant_id = persona.tenant.id
    refs = _users_with_attributes(tenant_id, 5)
    with tenant_context(tenant_id):
        pseudonyms_before = sorted(bytes(p) for p in EndUser.objects.values_list("pseudonym", flat=True))
        pkey_before = keyring.pseudonym_key(tenant_id)

    def all_readable():
        for n, ref in enumerate(refs):
            export = user_export(tenant_id=tenant_id, user_ref=ref, actor="test")
            expected = {"x": True} if ref == "late" else {"n": n, "tier": "gold"}
            assert export["attributes"] == expected, ref
        return True

    assert keyring.tenant_key_rotate(tenant_id=tenant_id, actor="test", enqueue=False) == 2
    assert _versions(tenant_id) == [(1, "retiring"), (2, "active")]
    assert all_readable()
    # a user created mid-rotation is wrapped under the new version at once
    user_attributes_put(tenant_id=tenant_id, user_ref="late", attributes={"x": True}, actor="test")
    refs.append("late")
    step = keyring.rewrap_batch(tenant_id=tenant_id, limit=2)
    assert (step.rewrapped, step.remaining) == (2, 3)
    assert _key_versions_in_use(tenant_id) == [1, 2]
    keyring.forget_cached_keys()
    assert all_readable()
    assert keyring.rotation_complete(tenant_id=tenant_id, batch=2)
    assert _versions(tenant_id) == [(1, "retired"), (2, "active")]
    assert _key_versions_in_use(tenant_id) == [2]
    with tenant_context(tenant_id):
        assert TenantKey.objects.get(tenant_id=tenant_id, purpose="enc", version=1).wrapped is None
    keyring.forget_cached_keys()
    assert all_readable()
    # rotating the encryption key leaves every pseudonym (and the pseudonym key) unchanged
    with tenant_context(tenant_id):
        pseudonyms_after = {bytes(p) for p in EndUser.objects.values_list("pseudonym", flat=True)}
        assert set(pseudonyms_before) <= pseudonyms_after
        assert keyring.pseudonym_key(tenant_id) == pkey_before
        assert pseudonymise(tenant_id=tenant_id, user_ref="user-0") in pseudonyms_after


def test_a_reader_holding_a_row_from_before_retirement_still_reads(live_db, fresh_keys):
    from apps.profiles.services import _user_key

    persona = make_tenant("race")
    tenant_id = persona.tenant.id
    _users_with_attributes(tenant_id, 1)
    with tenant_context(tenant_id):
        stale = EndUser.objects.get(tenant_id=tenant_id)
        raw_before = _user_key(tenant_id, stale, create=False)
    assert stale.key_version == 1
    keyring.tenant_key_rotate(tenant_id=tenant_id, actor="test", enqueue=False)
    assert keyring.rotation_complete(tenant_id=tenant_id)
    keyring.forget_cached_keys()  # as in another process: v1 is not in memory, and it is gone from the database
    with tenant_context(tenant_id):
        assert _user_key(tenant_id, stale, create=False) == raw_before
    assert stale.key_version == 2


def test_a_key_still_wrapped_under_a_retired_version_is_reported_as_retired(live_db, fresh_keys):
    persona = make_tenant("ret")
    tenant_id = persona.tenant.id
    with tenant_context(tenant_id):
        old = keyring.user_key_wrap(tenant_id=tenant_id, subject=b"z" * 32, key=KEY)
    keyring.tenant_key_rotate(tenant_id=tenant_id, actor="test", enqueue=False)
    assert keyring.rotation_complete(tenant_id=tenant_id)
    keyring.forget_cached_keys()
    with tenant_context(tenant_id), pytest.raises(keyring.KeyVersionRetired):
        keyring.user_key_unwrap(tenant_id=tenant_id, subject=b"z" * 32, wrapped=old)


def test_reads_never_fail_while_a_rotation_runs_concurrently(live_db, fresh_keys):
    persona = make_tenant("conc")
    tenant_id = persona.tenant.id
    refs = _users_with_attributes(tenant_id, 12)
    failures: list[BaseException] = []
    reads = 0
    stop = threading.Event()

    def reader():
        nonlocal reads
        try:
            while not stop.is_set():
                for n, ref in enumerate(refs):
                    got = user_export(tenant_id=tenant_id, user_ref=ref, actor="test")["attributes"]
                    if got != {"n": n, "tier": "gold"}:
                        failures.append(AssertionError(f"{ref}: {got}"))
                    reads += 1
                keyring.forget_cached_keys()
        except BaseException as exc:
            failures.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(2):
            keyring.tenant_key_rotate(tenant_id=tenant_id, actor="test", enqueue=False)
            assert keyring.rotation_complete(tenant_id=tenant_id, batch=3)
    finally:
        stop.set()
        thread.join(30)
    assert not failures, failures[:3]
    assert reads > 0
    assert _versions(tenant_id) == [(1, "retired"), (2, "retired"), (3, "active")]


def test_rotate_keys_inline_reports_progress_and_status(live_db, capsys, fresh_keys):
    persona = make_tenant("cmd")
    _users_with_attributes(persona.tenant.id, 3)
    call_command("rotate_keys", "--tenant", persona.slug, "--inline")
    out = capsys.readouterr().out
    assert "encryption key v2 is active" in out
    assert "enc       v1   retired   wraps 0 user keys" in out
    assert "enc       v2   active    wraps 3 user keys" in out
    assert "pseudonym v1   active" in out


def test_rotate_keys_refuses_an_unknown_tenant(live_db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no tenant"):
        call_command("rotate_keys", "--tenant", "no-such-tenant-zz")


@pytest.mark.worker
def test_rotate_keys_finishes_in_the_background_on_the_real_worker(live_db, celery_worker_proc, fresh_keys):
    persona = make_tenant("bg")
    tenant_id = persona.tenant.id
    refs = _users_with_attributes(tenant_id, 4)
    call_command("rotate_keys", "--tenant", persona.slug)
    wait_for(
        lambda: _versions(tenant_id) == [(1, "retired"), (2, "active")],
        timeout=60,
        message="the worker did not finish the rotation",
    )
    keyring.forget_cached_keys()
    assert _key_versions_in_use(tenant_id) == [2]
    for n, ref in enumerate(refs):
        assert user_export(tenant_id=tenant_id, user_ref=ref, actor="test")["attributes"] == {
            "n": n,
            "tier": "gold",
        }
    with dangerously_as_platform():
        assert TenantKey.objects.get(tenant_id=tenant_id, purpose="enc", version=1).wrapped is None
