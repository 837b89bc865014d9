"""Master-key rotation: old rows keep opening under the previous key until re-wrapped."""

import base64
import os

import pytest
from django.core.management import call_command

from apps.core.tenant_db import tenant_context
from apps.tenancy import keyring
from apps.tenancy.models import TenantKey


@pytest.fixture
def fresh_keys():
    keyring.forget_cached_keys()
    yield
    keyring.forget_cached_keys()


def _pseudonym(persona) -> bytes:
    with tenant_context(persona.tenant.id):
        return keyring.pseudonym_key(persona.tenant.id)


def _b64() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_rotating_the_master_key_rewraps_every_row_without_a_failed_read(tenant_a, settings, fresh_keys):
    old, new = _b64(), _b64()
    original = base64.b64encode(keyring.master_key()).decode()  # the key the tenant was created under
    settings.SOTTO = {**settings.SOTTO, "MASTER_KEY": old, "PREVIOUS_MASTER_KEYS": [original]}
    keyring.forget_cached_keys()
    keyring.tenant_keys_rewrap(tenant_id=tenant_a.tenant.id)  # rows now under `old`
    keyring.forget_cached_keys()
    pseudonym_before = _pseudonym(tenant_a)

    # Given a new master key with the old one still listed as previous
    settings.SOTTO = {**settings.SOTTO, "MASTER_KEY": new, "PREVIOUS_MASTER_KEYS": [old]}
    keyring.forget_cached_keys()
    # reads work before the re-wrap…
    assert _pseudonym(tenant_a) == pseudonym_before
    call_command("rewrap_tenant_keys", "--tenant", tenant_a.slug)
    with tenant_context(tenant_a.tenant.id):
        ids = set(
            TenantKey.objects.filter(tenant_id=tenant_a.tenant.id).values_list("master_key_id", flat=True)
        )
    assert ids == {keyring.master_key_id(keyring.parse_master_key(new, source="test"))}

    # …and after it, without the old key at all
    settings.SOTTO = {**settings.SOTTO, "PREVIOUS_MASTER_KEYS": []}
    keyring.forget_cached_keys()
    assert _pseudonym(tenant_a) == pseudonym_before


def test_without_the_previous_key_an_unrewrapped_row_fails_with_a_clear_message(
    tenant_a, settings, fresh_keys
):
    old, new = _b64(), _b64()
    original = base64.b64encode(keyring.master_key()).decode()  # the key the tenant was created under
    settings.SOTTO = {**settings.SOTTO, "MASTER_KEY": old, "PREVIOUS_MASTER_KEYS": [original]}
    keyring.forget_cached_keys()
    keyring.tenant_keys_rewrap(tenant_id=tenant_a.tenant.id)
    settings.SOTTO = {**settings.SOTTO, "MASTER_KEY": new}
    keyring.forget_cached_keys()
    with pytest.raises(keyring.KeyringError, match="wrapped under master key"):
        _pseudonym(tenant_a)
