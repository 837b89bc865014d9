"""Encoding in process (the worker runs this same service): atomic per batch, idempotent, hooked."""

import numpy as np
import pytest

from apps.catalog import services
from apps.catalog.models import EncodingStatus, Item
from apps.catalog.selectors import content_vectors, item_pks_by_external_ids
from apps.catalog.validation import parse_items
from apps.core import hooks
from apps.core.tenant_db import tenant_context


def _upsert(persona, raw):
    services.items_upsert(tenant_id=persona.tenant.id, items=parse_items(raw))
    return item_pks_by_external_ids(persona.tenant.id, [r["id"] for r in raw])


def _statuses(persona):
    with tenant_context(persona.tenant.id):
        return dict(Item.objects.values_list("external_id", "encoding_status"))


@pytest.fixture
def recorded_hook():
    calls = []

    def record(tenant_id, item_pks):
        calls.append((tenant_id, sorted(item_pks)))

    hooks._vectors_ready.append(record)
    yield calls
    hooks._vectors_ready.remove(record)


def test_it_writes_normalised_384d_vectors_and_marks_items_ready(tenant_a, recorded_hook):
    pks = _upsert(
        tenant_a,
        [
            {"id": "1", "title": "Toy Story (1995)", "categories": ["Animation"]},
            {"id": "2", "title": "Long", "description": "many words " * 400},
        ],
    )
    outcome = services.items_encode(tenant_id=tenant_a.tenant.id, item_pks=list(pks.values()))
    assert outcome.encoded == 2
    vectors = content_vectors(tenant_a.tenant.id, pks.values())
    assert set(vectors) == set(pks.values())
    for vector in vectors.values():
        assert vector.shape == (384,) and vector.dtype == np.float32
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    with tenant_context(tenant_a.tenant.id):
        rows = {i.external_id: i for i in Item.objects.all()}
    assert {i.encoding_status for i in rows.values()} == {EncodingStatus.READY}
    assert rows["1"].encoding_truncated is False and rows["2"].encoding_truncated is True
    assert rows["1"].encoding_model.startswith("all-MiniLM-L6-v2/")
    assert rows["1"].encoded_hash == rows["1"].content_hash
    assert recorded_hook == [(tenant_a.tenant.id, sorted(pks.values()))]


def test_running_it_twice_encodes_nothing_the_second_time(tenant_a, recorded_hook):
    pks = list(_upsert(tenant_a, [{"id": "1", "title": "Heat"}]).values())
    assert services.items_encode(tenant_id=tenant_a.tenant.id, item_pks=pks).encoded == 1
    assert services.items_encode(tenant_id=tenant_a.tenant.id, item_pks=pks).encoded == 0
    assert len(recorded_hook) == 1


def test_a_failing_hook_rolls_back_the_whole_batch(tenant_a):
    pks = list(_upsert(tenant_a, [{"id": "1", "title": "Heat"}, {"id": "2", "title": "Casino"}]).values())

    def explode(tenant_id, item_pks):
        raise RuntimeError("profiles fell over")

    hooks._vectors_ready.append(explode)
    try:
        with pytest.raises(RuntimeError):
            services.items_encode(tenant_id=tenant_a.tenant.id, item_pks=pks)
    finally:
        hooks._vectors_ready.remove(explode)
    assert content_vectors(tenant_a.tenant.id, pks) == {}
    assert set(_statuses(tenant_a).values()) == {EncodingStatus.PENDING}


def test_an_item_edited_while_it_was_being_encoded_keeps_waiting_for_its_new_text(tenant_a, monkeypatch):
    pks = _upsert(tenant_a, [{"id": "1", "title": "Old title"}, {"id": "2", "title": "Other"}])
    from apps.catalog import encoding

    real = encoding.encoder_for_tenant

    def encoder_that_races(tenant_id):
        encoder = real(tenant_id)

        class Racing:
            model_id = encoder.model_id

            def encode(self, texts):
                _upsert(tenant_a, [{"id": "1", "title": "New title"}])  # an edit lands mid-encode
                return encoder.encode(texts)

        return Racing()

    monkeypatch.setattr(encoding, "encoder_for_tenant", encoder_that_races)
    outcome = services.items_encode(tenant_id=tenant_a.tenant.id, item_pks=list(pks.values()))
    assert outcome.encoded == 1
    assert _statuses(tenant_a) == {"1": EncodingStatus.PENDING, "2": EncodingStatus.READY}
    assert set(content_vectors(tenant_a.tenant.id, pks.values())) == {pks["2"]}


def test_a_tenant_with_an_unusable_model_gets_failed_items_with_the_reason(tenant_a, tmp_path):
    from apps.catalog.tasks import encode_items
    from apps.tenancy.services import tenant_update_settings

    tenant_update_settings(
        tenant=tenant_a.tenant, changes={"encoder_model_path": str(tmp_path / "nope")}, actor="test"
    )
    pks = list(_upsert(tenant_a, [{"id": "1", "title": "Heat"}]).values())
    result = encode_items.apply(args=[tenant_a.tenant.id, pks]).get()
    assert result == {"encoded": 0, "failed": 1}
    with tenant_context(tenant_a.tenant.id):
        row = Item.objects.get(external_id="1")
    assert row.encoding_status == EncodingStatus.FAILED
    assert "does not exist" in row.encoding_error


def test_resending_a_failed_item_queues_it_again(tenant_a):
    pks = list(_upsert(tenant_a, [{"id": "1", "title": "Heat"}]).values())
    services.items_mark_failed(tenant_id=tenant_a.tenant.id, item_pks=pks, error="boom")
    again = services.items_upsert(
        tenant_id=tenant_a.tenant.id, items=parse_items([{"id": "1", "title": "Heat"}])
    )
    assert again.queued == 1
    assert _statuses(tenant_a) == {"1": EncodingStatus.PENDING}


def test_the_int8_precision_setting_reaches_the_encoder(tenant_a, settings):
    settings.SOTTO = {**settings.SOTTO, "ENCODER_PRECISION": "int8"}
    pks = list(_upsert(tenant_a, [{"id": "1", "title": "Toy Story (1995)"}]).values())
    services.items_encode(tenant_id=tenant_a.tenant.id, item_pks=pks)
    with tenant_context(tenant_a.tenant.id):
        row = Item.objects.get(external_id="1")
    assert row.encoding_status == EncodingStatus.READY
    assert row.encoding_model.endswith("/int8-onnx") or row.encoding_model.endswith("/int8-torch")
    vector = content_vectors(tenant_a.tenant.id, pks)[pks[0]]
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
