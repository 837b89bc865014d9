"""Pure (Django-free) tests of the audit chain encoding, chain checks, checkpoints, keys and bundle builder.

The golden vectors pin the wire format: the DB triggers, the export endpoint and the offline
verifier all depend on these exact bytes, so a change here is a format break (bump the version).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import stat
import zipfile
from datetime import UTC, datetime, timedelta, timezone
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.audit import bundle, chain
from apps.audit.chain import (
    VerifyResult,
    canonical_bytes,
    checkpoint_payload,
    compute_hash,
    format_time,
    genesis_hash,
    key_fingerprint,
    key_id,
    load_or_create_private_key,
    make_event,
    public_key_to_pem,
    read_private_key_file,
    sign_checkpoint,
    verify_chain,
    verify_checkpoint,
    write_private_key_file,
)

GOLDEN_TIME = "2025-01-02T03:04:05.000006Z"
GOLDEN_SIGNED_AT = "2025-01-02T03:04:06.000000Z"
GENESIS_ACME = "ef41cee3d57d9cd921db6d9c3a9fa01eed5dd0e49c07f02baac1aa2b930551e7"
GENESIS_PLATFORM = "42fc72b9e395fb795a4dff93d1789718f89cee5bbf2024df6c73d8d6e216605a"
GOLDEN_HASH = "dedf4926994bef7d493c830cf308d13cee274ceb946c6f46ec83a0520ccac4cc"


def golden_event() -> dict[str, Any]:
    return {
        "tenant": "acme",
        "sequence": 1,
        "time": GOLDEN_TIME,
        "actor": "user:alice",
        "action": "item.update",
        "target_type": "item",
        "target_id": "it_9f2c",
        "details": {"z": [1, True, None], "a": "café ☕", "n": {"b": "\n"}},
        "prev_hash": GENESIS_ACME,
    }


def fixed_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def make_chain(tenant: str | None, n: int, *, start: datetime | None = None) -> list[dict[str, Any]]:
    t0 = start or datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    events: list[dict[str, Any]] = []
    prev = genesis_hash(tenant)
    for i in range(1, n + 1):
        ev = make_event(
            tenant=tenant,
            sequence=i,
            time=t0 + timedelta(seconds=i, microseconds=i),
            actor="user:alice" if i % 2 else "key:sk_ab12",
            action="item.update",
            target_type="item",
            target_id=f"it_{i:04x}",
            details={"i": i, "fields": ["title"]},
            prev_hash=prev,
        )
        events.append(ev)
        prev = ev["hash"]
    return events


# ---------------------------------------------------------------------------- golden format


def test_canonical_bytes_golden_vector() -> None:
    expected = (
        b"sotto-audit-v1\x00"
        b'{"action":"item.update","actor":"user:alice","details":{"a":"caf\xc3\xa9 \xe2\x98\x95",'
        b'"n":{"b":"\\n"},"z":[1,true,null]},"prev_hash":"' + GENESIS_ACME.encode() + b'","sequence":1,'
        b'"target_id":"it_9f2c","target_type":"item","tenant":"acme","time":"2025-01-02T03:04:05.000006Z"}'
    )
    assert canonical_bytes(golden_event()) == expected
    assert compute_hash(golden_event()) == hashlib.sha256(expected).hexdigest() == GOLDEN_HASH


def test_genesis_golden_and_definition() -> None:
    assert genesis_hash("acme") == GENESIS_ACME
    assert genesis_hash(None) == GENESIS_PLATFORM
    assert hashlib.sha256(b'sotto-audit-genesis-v1\x00"acme"').hexdigest() == GENESIS_ACME
    assert hashlib.sha256(b"sotto-audit-genesis-v1\x00null").hexdigest() == GENESIS_PLATFORM


def test_genesis_is_tenant_bound_and_unambiguous() -> None:
    values = {genesis_hash(t) for t in (None, "null", "acme", "acme2", "Acme", '"acme"')}
    assert len(values) == 6
    assert "0" * 64 not in values
    with pytest.raises(ValueError):
        genesis_hash("")


def test_checkpoint_payload_golden() -> None:
    assert checkpoint_payload("acme", 1, GOLDEN_HASH, GOLDEN_SIGNED_AT) == (
        b'sotto-audit-checkpoint-v1\x00{"head_hash":"' + GOLDEN_HASH.encode() + b'","kind":"periodic",'
        b'"sequence":1,"signed_at":"2025-01-02T03:04:06.000000Z","tenant":"acme"}'
    )
    assert checkpoint_payload(
        None, 0, GENESIS_PLATFORM, GOLDEN_SIGNED_AT, first_sequence=1, first_prev_hash=GENESIS_PLATFORM
    ) == (
        b'sotto-audit-checkpoint-v1\x00{"first_prev_hash":"' + GENESIS_PLATFORM.encode() + b'",'
        b'"first_sequence":1,"head_hash":"' + GENESIS_PLATFORM.encode() + b'","kind":"export",'
        b'"sequence":0,"signed_at":"2025-01-02T03:04:06.000000Z","tenant":null}'
    )


def test_signature_golden_with_fixed_key() -> None:
    key = fixed_key()
    assert (
        key_fingerprint(key.public_key())
        == "56475aa75463474c0285df5dbf2bcab73da651358839e9b77481b2eab107708c"
    )
    assert key_id(key.public_key()) == "56475aa75463474c"
    cp = sign_checkpoint(key, "acme", 1, GOLDEN_HASH, GOLDEN_SIGNED_AT)
    assert cp == {
        "kind": "periodic",
        "tenant": "acme",
        "sequence": 1,
        "head_hash": GOLDEN_HASH,
        "signed_at": GOLDEN_SIGNED_AT,
        "key_id": "56475aa75463474c",
        "signature": "InwB5Wzii7gtGFZDybRnLM6dClggNorUWN9w4xt1N13TzS7sRwA48knxA7w5uANfdcSz2lC9FfQmOXlyaOrTDA==",
    }


# ---------------------------------------------------------------------------- encoding rules


def test_hash_ignores_hash_field_and_key_order() -> None:
    ev = golden_event()
    reordered = dict(reversed(list(ev.items())))
    reordered["hash"] = "f" * 64
    assert compute_hash(reordered) == GOLDEN_HASH


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tenant", "acme2"),
        ("tenant", None),
        ("sequence", 2),
        ("time", "2025-01-02T03:04:05.000007Z"),
        ("actor", "user:mallory"),
        ("action", "item.delete"),
        ("target_type", "user"),
        ("target_id", "it_9f2d"),
        ("details", {"z": [1, True, None], "a": "café ☕", "n": {"b": "\r"}}),
        ("prev_hash", "0" * 64),
    ],
)
def test_every_field_is_hashed(field: str, value: Any) -> None:
    ev = golden_event()
    ev[field] = value
    assert compute_hash(ev) != GOLDEN_HASH


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda e: e.update(extra="x"), id="extra-field"),
        pytest.param(lambda e: e.pop("actor"), id="missing-field"),
        pytest.param(lambda e: e.update(tenant=""), id="empty-tenant"),
        pytest.param(lambda e: e.update(sequence=True), id="bool-sequence"),
        pytest.param(lambda e: e.update(sequence=0), id="zero-sequence"),
        pytest.param(lambda e: e.update(sequence="1"), id="str-sequence"),
        pytest.param(lambda e: e.update(time="2025-01-02T03:04:05Z"), id="no-microseconds"),
        pytest.param(lambda e: e.update(time="2025-01-02T03:04:05.000006+00:00"), id="offset-not-Z"),
        pytest.param(lambda e: e.update(time="٢٠٢٥-01-02T03:04:05.000006Z"), id="non-ascii-digits"),
        pytest.param(lambda e: e.update(actor=""), id="empty-actor"),
        pytest.param(lambda e: e.update(target_id=5), id="int-target"),
        pytest.param(lambda e: e.update(details=[]), id="details-list"),
        pytest.param(lambda e: e.update(details={"score": 0.5}), id="float"),
        pytest.param(lambda e: e.update(details={"x": [float("nan")]}), id="nan"),
        pytest.param(lambda e: e.update(details={"n": 2**53}), id="huge-int"),
        pytest.param(lambda e: e.update(details={1: "x"}), id="int-key"),
        pytest.param(lambda e: e.update(details={"b": b"x"}), id="bytes"),
        pytest.param(lambda e: e.update(details={"s": "\ud800"}), id="lone-surrogate"),
        pytest.param(lambda e: e.update(prev_hash="A" * 64), id="upper-hex"),
        pytest.param(lambda e: e.update(prev_hash="0" * 63), id="short-hex"),
        pytest.param(lambda e: e.update(hash="xyz"), id="bad-hash"),
    ],
)
def test_invalid_events_are_refused(mutate: Any) -> None:
    ev = golden_event()
    mutate(ev)
    with pytest.raises(ValueError):
        canonical_bytes(ev)


def test_deep_nesting_refused() -> None:
    ev = golden_event()
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    ev["details"] = {"d": deep}
    with pytest.raises(ValueError):
        compute_hash(ev)


def test_format_time() -> None:
    assert format_time(datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == GOLDEN_TIME
    plus2 = timezone(timedelta(hours=2))
    assert format_time(datetime(2025, 1, 2, 5, 4, 5, 6, tzinfo=plus2)) == GOLDEN_TIME
    with pytest.raises(ValueError):
        format_time(datetime(2025, 1, 2, 3, 4, 5))  # noqa: DTZ001 - the point of the test


def test_make_event_seals() -> None:
    ev = make_event(**{**golden_event(), "time": datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)})
    assert ev["time"] == GOLDEN_TIME
    assert ev["hash"] == GOLDEN_HASH
    line = chain.encode_event_line(ev)
    assert json.loads(line) == ev
    with pytest.raises(ValueError):
        chain.encode_event_line(golden_event())  # not sealed


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)
events_strategy = st.fixed_dictionaries(
    {
        "tenant": st.one_of(st.none(), st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)),
        "sequence": st.integers(min_value=1, max_value=2**53 - 1),
        "time": st.datetimes(
            min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
            max_value=datetime(2100, 1, 1),  # noqa: DTZ001
            timezones=st.just(UTC),
        ).map(format_time),
        "actor": st.text(min_size=1, max_size=20),
        "action": st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=20),
        "target_type": st.text(alphabet=st.characters(codec="utf-8"), max_size=10),
        "target_id": st.text(alphabet=st.characters(codec="utf-8"), max_size=10),
        "details": st.dictionaries(st.text(max_size=8), json_value, max_size=4),
        "prev_hash": st.binary(min_size=32, max_size=32).map(bytes.hex),
    }
)


def _encodable(ev: dict[str, Any]) -> bool:
    try:
        canonical_bytes(ev)
    except ValueError:
        return False
    return True


@settings(max_examples=150, deadline=None)
@given(events_strategy)
def test_property_encoding_roundtrips_through_json(ev: dict[str, Any]) -> None:
    """What the DB stores as JSON and reads back must hash the same (no lossy types)."""
    if not _encodable(ev):  # lone surrogates in generated keys/actor: refused by design
        return
    sealed = {**ev, "hash": compute_hash(ev)}
    line = chain.encode_event_line(sealed)
    back = json.loads(line.decode("utf-8"))
    assert back == sealed
    assert compute_hash(back) == sealed["hash"]
    assert chain.encode_event_line(back) == line
    assert canonical_bytes(ev).startswith(b"sotto-audit-v1\x00")


# ---------------------------------------------------------------------------- verify_chain


def test_verify_chain_clean_and_empty() -> None:
    events = make_chain("acme", 6)
    assert verify_chain(events, tenant="acme") == VerifyResult(True, None, "ok")
    assert verify_chain([], tenant="acme").ok
    assert verify_chain(make_chain(None, 3), tenant=None).ok


def test_verify_chain_detects_edit() -> None:
    events = make_chain("acme", 6)
    events[3]["details"] = {"i": 999, "fields": ["title"]}
    r = verify_chain(events, tenant="acme")
    assert (r.ok, r.bad_sequence) == (False, 4)
    assert "hash mismatch" in r.reason


def test_verify_chain_detects_delete_and_reorder() -> None:
    events = make_chain("acme", 6)
    r = verify_chain(events[:2] + events[3:], tenant="acme")
    assert (r.ok, r.bad_sequence) == (False, 3)
    assert "expected 3, found 4" in r.reason
    swapped = [*events[:2], events[3], events[2], *events[4:]]
    assert verify_chain(swapped, tenant="acme").bad_sequence == 3


def test_verify_chain_detects_rehashed_deletion() -> None:
    """Deleting an event and renumbering + rehashing the rest breaks the prev link only if not relinked;
    relinking everything is a full forgery that only signed checkpoints can catch (see tamper matrix)."""
    events = make_chain("acme", 5)
    forged = copy.deepcopy(events[:2] + events[3:])
    for i, ev in enumerate(forged[2:], start=3):
        ev["sequence"] = i
        ev["hash"] = compute_hash(ev)
    r = verify_chain(forged, tenant="acme")
    assert (r.ok, r.bad_sequence) == (False, 3)
    assert "prev_hash" in r.reason


def test_verify_chain_detects_replay_of_other_tenant() -> None:
    beta = make_chain("beta", 3)
    r = verify_chain(beta, tenant="acme")
    assert (r.ok, r.bad_sequence) == (False, 1)
    assert "tenant" in r.reason
    # rewrite the tenant field and recompute the hashes: the tenant-bound genesis still breaks it
    relabelled = copy.deepcopy(beta)
    for ev in relabelled:
        ev["tenant"] = "acme"
        ev["hash"] = compute_hash(ev)
    r = verify_chain(relabelled, tenant="acme")
    assert (r.ok, r.bad_sequence) == (False, 1)
    assert "prev_hash" in r.reason


def test_verify_chain_mid_range_and_malformed() -> None:
    events = make_chain("acme", 8)
    assert verify_chain(events[4:], tenant="acme", start_sequence=5, start_prev_hash=events[3]["hash"]).ok
    assert not verify_chain(events[4:], tenant="acme", start_sequence=5, start_prev_hash=events[2]["hash"]).ok
    with pytest.raises(ValueError):
        verify_chain(events[4:], tenant="acme", start_sequence=5)
    broken = copy.deepcopy(events)
    del broken[2]["hash"]
    assert verify_chain(broken, tenant="acme").bad_sequence == 3
    broken[2]["hash"] = events[2]["hash"]
    broken[2]["details"] = {"x": 1.5}
    r = verify_chain(broken, tenant="acme")
    assert r.bad_sequence == 3
    assert r.reason.startswith("malformed event")


# ---------------------------------------------------------------------------- checkpoints


def test_checkpoint_roundtrip_and_tamper() -> None:
    key = chain.generate_private_key()
    pub = key.public_key()
    cp = sign_checkpoint(key, "acme", 7, GOLDEN_HASH, datetime(2025, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert cp["signed_at"] == GOLDEN_SIGNED_AT
    assert cp["key_id"] == key_id(pub) == hashlib.sha256(chain.raw_public_key(pub)).hexdigest()[:16]
    assert verify_checkpoint(pub, cp)
    for field, value in [
        ("tenant", "beta"),
        ("tenant", None),
        ("sequence", 8),
        ("head_hash", "0" * 64),
        ("signed_at", "2025-01-02T03:04:07.000000Z"),
        ("kind", "export"),
        ("key_id", "0" * 16),
    ]:
        assert not verify_checkpoint(pub, {**cp, field: value}), field
    assert not verify_checkpoint(chain.generate_private_key().public_key(), cp)
    assert not verify_checkpoint(pub, {**cp, "extra": 1})
    assert not verify_checkpoint(pub, [])  # type: ignore[arg-type]
    assert not verify_checkpoint(pub, {k: v for k, v in cp.items() if k != "signature"})


def test_checkpoint_signature_bitflips_and_encoding() -> None:
    key = chain.generate_private_key()
    cp = sign_checkpoint(key, "acme", 7, GOLDEN_HASH, GOLDEN_SIGNED_AT)
    raw = base64.b64decode(cp["signature"])
    for bit in range(0, 512, 7):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert not verify_checkpoint(
            key.public_key(), {**cp, "signature": base64.b64encode(flipped).decode()}
        )
    sig = cp["signature"]
    # the last data char carries 4 unused bits: a non-canonical spelling of the same bytes is refused
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    alt = sig[:-3] + alphabet[alphabet.index(sig[-3]) ^ 1] + "=="
    assert alt != sig
    assert base64.b64decode(alt) == raw  # lenient decoders accept it; we must not
    for bad in (sig.rstrip("="), sig + "\n", sig.replace("+", "-"), alt, 123, ""):
        if bad != sig:
            assert not verify_checkpoint(key.public_key(), {**cp, "signature": bad})


def test_export_checkpoint_binds_range() -> None:
    key = chain.generate_private_key()
    cp = sign_checkpoint(
        key, "acme", 9, GOLDEN_HASH, GOLDEN_SIGNED_AT, first_sequence=5, first_prev_hash=GENESIS_ACME
    )
    assert cp["kind"] == "export"
    assert verify_checkpoint(key.public_key(), cp)
    assert not verify_checkpoint(key.public_key(), {**cp, "first_sequence": 6})
    assert not verify_checkpoint(key.public_key(), {**cp, "first_prev_hash": GOLDEN_HASH})
    periodic = {k: v for k, v in cp.items() if k not in ("first_sequence", "first_prev_hash")}
    assert not verify_checkpoint(key.public_key(), {**periodic, "kind": "periodic"})
    with pytest.raises(ValueError):
        checkpoint_payload(
            "acme", 3, GOLDEN_HASH, GOLDEN_SIGNED_AT, first_sequence=5, first_prev_hash=GOLDEN_HASH
        )
    with pytest.raises(ValueError):  # empty export must anchor on its own head
        checkpoint_payload(
            "acme", 3, GOLDEN_HASH, GOLDEN_SIGNED_AT, first_sequence=4, first_prev_hash=GENESIS_ACME
        )
    with pytest.raises(ValueError):
        checkpoint_payload("acme", -1, GOLDEN_HASH, GOLDEN_SIGNED_AT)


# ---------------------------------------------------------------------------- keys


def test_key_file_is_private_and_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "audit.pem"
    key = load_or_create_private_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_private_key(path)
    assert key_id(again.public_key()) == key_id(key.public_key())
    with pytest.raises(FileExistsError):
        write_private_key_file(chain.generate_private_key(), path)
    path.chmod(0o644)
    with pytest.raises(PermissionError):
        read_private_key_file(path)


def test_key_file_refuses_symlink(tmp_path: Path) -> None:
    target = tmp_path / "real.pem"
    write_private_key_file(chain.generate_private_key(), target)
    link = tmp_path / "link.pem"
    link.symlink_to(target)
    with pytest.raises(OSError):
        read_private_key_file(link)
    with pytest.raises(OSError):
        write_private_key_file(chain.generate_private_key(), tmp_path / "link.pem")


def test_key_file_ignores_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private_key_file(chain.generate_private_key(), tmp_path / "k.pem")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600


def test_pem_roundtrip_and_algorithm_pinning() -> None:
    key = chain.generate_private_key()
    assert (
        chain.load_private_key_pem(chain.private_key_to_pem(key)).private_bytes_raw()
        == key.private_bytes_raw()
    )
    pub_pem = public_key_to_pem(key.public_key())
    assert chain.load_public_key_pem(pub_pem).public_bytes_raw() == key.public_key().public_bytes_raw()
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_priv = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ec_pub = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError):
        chain.load_private_key_pem(ec_priv)
    with pytest.raises(ValueError):
        chain.load_public_key_pem(ec_pub)


# ---------------------------------------------------------------------------- bundle builder


def _bundle_inputs(n: int = 5) -> tuple[Ed25519PrivateKey, list[dict[str, Any]], list[dict[str, Any]]]:
    key = fixed_key()
    events = make_chain("acme", n)
    cps = [
        sign_checkpoint(key, "acme", 2, events[1]["hash"], "2025-03-01T12:00:03.000000Z"),
        bundle.make_export_checkpoint(key, "acme", events, signed_at="2025-03-02T00:00:00.000000Z"),
    ]
    return key, events, cps


def test_build_bundle_layout_and_determinism() -> None:
    key, events, cps = _bundle_inputs()
    pem = public_key_to_pem(key.public_key())
    args = ("acme", events, cps, pem, "2025-03-01T00:00:00.000000Z", "2025-03-02T00:00:00.000000Z")
    data = bundle.build_bundle(*args, created_at="2025-03-02T00:00:01.000000Z")
    assert data == bundle.build_bundle(*args, created_at="2025-03-02T00:00:01.000000Z")
    with zipfile.ZipFile(BytesIO(data)) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    assert set(files) == {"manifest.json", "events.jsonl", "events.csv", "checkpoints.json", "public_key.pem"}
    manifest = json.loads(files["manifest.json"])
    assert manifest["tenant"] == "acme"
    assert (manifest["event_count"], manifest["first_sequence"], manifest["last_sequence"]) == (5, 1, 5)
    assert manifest["first_prev_hash"] == GENESIS_ACME
    assert manifest["key_id"] == key_id(key.public_key())
    assert manifest["format_version"] == 1
    for name, digest in manifest["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == digest
    lines = files["events.jsonl"].split(b"\n")
    assert lines[-1] == b""
    assert [json.loads(x)["sequence"] for x in lines[:-1]] == [1, 2, 3, 4, 5]
    assert files["events.csv"].startswith("\ufeffsequence,time,tenant".encode())


def test_build_bundle_sorts_events() -> None:
    key, events, cps = _bundle_inputs()
    pem = public_key_to_pem(key.public_key())
    a = bundle.build_bundle("acme", events, cps, pem, None, None, created_at=GOLDEN_SIGNED_AT)
    b = bundle.build_bundle("acme", events[::-1], cps[::-1], pem, None, None, created_at=GOLDEN_SIGNED_AT)
    assert a == b


def test_build_bundle_refuses_bad_inputs() -> None:
    key, events, cps = _bundle_inputs()
    pem = public_key_to_pem(key.public_key())
    other_pem = public_key_to_pem(chain.generate_private_key().public_key())
    with pytest.raises(ValueError, match="export checkpoint"):
        bundle.build_bundle("acme", events, cps[:1], pem, None, None)
    with pytest.raises(ValueError, match="cover"):
        bundle.build_bundle("acme", events[:-1], cps, pem, None, None)
    with pytest.raises(ValueError, match="signed"):
        bundle.build_bundle("acme", events, cps, other_pem, None, None)
    with pytest.raises(ValueError, match="tenant"):
        bundle.build_bundle("beta", events, cps, pem, None, None)
    with pytest.raises(ValueError):
        bundle.build_bundle("acme", events, cps, pem, "yesterday", None)


def test_make_export_checkpoint_refuses_broken_chain() -> None:
    key = fixed_key()
    events = make_chain("acme", 4)
    events[2]["actor"] = "user:mallory"
    with pytest.raises(ValueError, match="broken chain at sequence 3"):
        bundle.make_export_checkpoint(key, "acme", events, signed_at=GOLDEN_SIGNED_AT)
    with pytest.raises(ValueError, match="anchor"):
        bundle.make_export_checkpoint(key, "acme", [], signed_at=GOLDEN_SIGNED_AT)
    cp = bundle.make_export_checkpoint(key, "acme", [], signed_at=GOLDEN_SIGNED_AT, anchor=(0, GENESIS_ACME))
    assert (cp["sequence"], cp["first_sequence"], cp["head_hash"]) == (0, 1, GENESIS_ACME)


def test_csv_neutralises_formulas() -> None:
    events = make_chain("acme", 1)
    events[0] = make_event(
        **{**{k: v for k, v in events[0].items() if k != "hash"}, "target_id": "=HYPERLINK(1)"}
    )
    text = bundle.events_to_csv(events).decode("utf-8")
    assert "'=HYPERLINK(1)" in text
    assert ",=HYPERLINK" not in text
