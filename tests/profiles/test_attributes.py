"""Encrypted attributes: round trips exactly, and a ciphertext moved anywhere else never opens.

Personas: ``tenant_a`` and ``tenant_b`` (each with an ingest key); ``api`` is the client.
"""

from __future__ import annotations

import math

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.core.tenant_db import tenant_context
from apps.profiles.attribute_crypto import AttributeSealer
from apps.profiles.models import EndUser, UserAttribute
from apps.profiles.services import user_attributes_put, user_export
from apps.tenancy.keyring import DecryptionFailed
from apps.tenancy.pseudonyms import pseudonymise

# Valid Unicode only: lone surrogates are refused at validation (see test_validation.py).
names = st.text(
    st.characters(min_codepoint=32, exclude_characters="\x7f", exclude_categories=["Cs"]),
    min_size=1,
    max_size=64,
).filter(str.strip)
values = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), max_size=200),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
attribute_maps = st.dictionaries(names, values, max_size=12)


def same(a, b):
    """Equal and of the same JSON type (True == 1 in Python, but not in an export)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


@settings(max_examples=200, deadline=None)
@given(
    name=names,
    value=values,
    pseudonym=st.binary(min_size=32, max_size=32),
    key=st.binary(min_size=32, max_size=32),
)
def test_sealing_round_trips_every_value_exactly(name, value, pseudonym, key):
    sealer = AttributeSealer(tenant_id=7, pseudonym=pseudonym, user_key=key)
    tag, blob = sealer.seal(name, value)
    got_name, got_value = sealer.open(tag, blob)
    assert got_name == name and same(got_value, value)


def test_the_same_value_seals_differently_every_time():
    sealer = AttributeSealer(tenant_id=1, pseudonym=b"p" * 32, user_key=b"k" * 32)
    assert sealer.seal("city", "Paris")[1] != sealer.seal("city", "Paris")[1]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attributes=attribute_maps)
def test_attributes_round_trip_through_the_database(tenant_a, attributes):
    tenant_id = tenant_a.tenant.id
    with transaction.atomic():
        user_attributes_put(tenant_id=tenant_id, user_ref="prop", attributes=attributes, actor="test")
        exported = user_export(tenant_id=tenant_id, user_ref="prop", actor="test")["attributes"]
        transaction.set_rollback(True)
    assert sorted(exported) == sorted(attributes)
    assert all(same(exported[k], attributes[k]) for k in attributes)


def test_put_replaces_the_whole_map_and_says_whether_the_user_is_new(api, tenant_a):
    first = api.put(
        "/api/v1/users/zoe", {"attributes": {"age": 41, "vip": True}}, format="json", **tenant_a.auth
    )
    assert first.status_code == 201
    assert first.json() == {"user": "zoe", "attributes_stored": 2, "created": True}
    second = api.put(
        "/api/v1/users/zoe", {"attributes": {"age": 42, "score": 0.5}}, format="json", **tenant_a.auth
    )
    assert second.status_code == 200 and second.json()["created"] is False
    export = api.get("/api/v1/users/zoe", **tenant_a.auth).json()
    assert export["attributes"] == {"age": 42, "score": 0.5}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"attributes": {"a": None}}, 400),
        ({"attributes": [1]}, 400),
        ({"attributes": {"bio": "x" * 2000}}, 413),
        ({"attributes": {f"k{i}": 1 for i in range(101)}}, 413),
    ],
)
def test_bad_attribute_bodies_are_4xx_and_change_nothing(api, tenant_a, body, status):
    api.put("/api/v1/users/yan", {"attributes": {"keep": "me"}}, format="json", **tenant_a.auth)
    response = api.put("/api/v1/users/yan", body, format="json", **tenant_a.auth)
    assert response.status_code == status
    assert api.get("/api/v1/users/yan", **tenant_a.auth).json()["attributes"] == {"keep": "me"}


def test_user_ids_with_slashes_and_unicode_work_in_the_path(api, tenant_a):
    ref = "org/42/ユーザー+1@example.com"
    from urllib.parse import quote

    url = "/api/v1/users/" + quote(ref, safe="")
    assert api.put(url, {"attributes": {"a": 1}}, format="json", **tenant_a.auth).status_code == 201
    assert api.get(url, **tenant_a.auth).json()["user"] == ref


# --- relocation: every copy of a ciphertext to another row, field or tenant is rejected -----------


def _rows(tenant_id, ref):
    with tenant_context(tenant_id):
        user = EndUser.objects.get(
            tenant_id=tenant_id, pseudonym=pseudonymise(tenant_id=tenant_id, user_ref=ref)
        )
        return user, list(UserAttribute.objects.filter(user=user).order_by("pk"))


def _export(tenant_id, ref):
    return user_export(tenant_id=tenant_id, user_ref=ref, actor="test")


@pytest.fixture
def two_users(tenant_a):
    tenant_id = tenant_a.tenant.id
    user_attributes_put(
        tenant_id=tenant_id, user_ref="victim", attributes={"income": 90000, "city": "Oslo"}, actor="t"
    )
    user_attributes_put(
        tenant_id=tenant_id, user_ref="thief", attributes={"income": 1, "city": "Rome"}, actor="t"
    )
    return tenant_id


def test_a_ciphertext_moved_to_another_users_row_is_rejected(two_users):
    tenant_id = two_users
    _, victim = _rows(tenant_id, "victim")
    _, thief = _rows(tenant_id, "thief")
    with tenant_context(tenant_id):
        for mine, theirs in zip(thief, victim, strict=True):
            UserAttribute.objects.filter(pk=mine.pk).update(ciphertext=theirs.ciphertext)
    export = _export(tenant_id, "thief")
    assert export["attributes"] == {} and export["attribute_integrity_failures"] == 2


def test_a_whole_attribute_row_moved_to_another_user_is_rejected(two_users):
    tenant_id = two_users
    _, victim = _rows(tenant_id, "victim")
    thief_user, _ = _rows(tenant_id, "thief")
    with tenant_context(tenant_id):
        UserAttribute.objects.filter(user=thief_user).delete()
        UserAttribute.objects.bulk_create(
            [
                UserAttribute(
                    tenant_id=tenant_id, user=thief_user, name_tag=row.name_tag, ciphertext=row.ciphertext
                )
                for row in victim
            ]
        )
    export = _export(tenant_id, "thief")
    assert export["attributes"] == {} and export["attribute_integrity_failures"] == 2


def test_a_ciphertext_moved_to_another_field_of_the_same_user_is_rejected(two_users):
    tenant_id = two_users
    _, rows = _rows(tenant_id, "victim")
    with tenant_context(tenant_id):
        UserAttribute.objects.filter(pk=rows[0].pk).update(ciphertext=rows[1].ciphertext)
        UserAttribute.objects.filter(pk=rows[1].pk).update(ciphertext=rows[0].ciphertext)
    export = _export(tenant_id, "victim")
    assert export["attributes"] == {} and export["attribute_integrity_failures"] == 2


def test_a_wrapped_user_key_moved_to_another_user_is_rejected(two_users):
    tenant_id = two_users
    victim_user, _ = _rows(tenant_id, "victim")
    thief_user, _ = _rows(tenant_id, "thief")
    with tenant_context(tenant_id):
        EndUser.objects.filter(pk=thief_user.pk).update(wrapped_key=victim_user.wrapped_key)
    with pytest.raises(DecryptionFailed):
        _export(tenant_id, "thief")


def test_ciphertexts_and_keys_moved_to_another_tenant_are_rejected(two_users, tenant_b):
    tenant_a_id, tenant_b_id = two_users, tenant_b.tenant.id
    victim_user, victim_rows = _rows(tenant_a_id, "victim")
    user_attributes_put(
        tenant_id=tenant_b_id, user_ref="victim", attributes={"income": 0, "city": "x"}, actor="t"
    )
    b_user, b_rows = _rows(tenant_b_id, "victim")
    with tenant_context(tenant_b_id):
        for mine, theirs in zip(b_rows, victim_rows, strict=True):
            UserAttribute.objects.filter(pk=mine.pk).update(ciphertext=theirs.ciphertext)
    assert _export(tenant_b_id, "victim")["attribute_integrity_failures"] == 2
    with tenant_context(tenant_b_id):
        EndUser.objects.filter(pk=b_user.pk).update(
            wrapped_key=victim_user.wrapped_key, key_version=victim_user.key_version
        )
    with pytest.raises(DecryptionFailed):
        _export(tenant_b_id, "victim")


def test_a_flipped_bit_is_rejected(two_users):
    tenant_id = two_users
    _, rows = _rows(tenant_id, "victim")
    blob = bytearray(rows[0].ciphertext)
    blob[-1] ^= 1
    with tenant_context(tenant_id):
        UserAttribute.objects.filter(pk=rows[0].pk).update(ciphertext=bytes(blob))
    export = _export(tenant_id, "victim")
    assert export["attribute_integrity_failures"] == 1 and len(export["attributes"]) == 1


@settings(max_examples=100, deadline=None)
@given(
    tenant=st.integers(1, 5),
    other_tenant=st.integers(1, 5),
    p=st.binary(min_size=32, max_size=32),
    q=st.binary(min_size=32, max_size=32),
    name=names,
    other_name=names,
    value=values,
)
def test_relocation_is_rejected_for_any_change_of_tenant_row_or_field(
    tenant, other_tenant, p, q, name, other_name, value
):
    key = b"k" * 32
    _, blob = AttributeSealer(tenant_id=tenant, pseudonym=p, user_key=key).seal(name, value)
    target = AttributeSealer(tenant_id=other_tenant, pseudonym=q, user_key=key)
    target_tag = target.name_tag(other_name)
    if (tenant, p, name) == (other_tenant, q, other_name):
        assert target.open(target_tag, blob)[0] == name  # the control: same place opens
    else:
        with pytest.raises(DecryptionFailed):
            target.open(target_tag, blob)
