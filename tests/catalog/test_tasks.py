"""The encode task's contract: routed to the encode queue, late acks, bounded retries."""

from django.conf import settings

from apps.catalog.tasks import MAX_RETRIES, encode_items


def test_encode_items_is_routed_to_the_encode_queue():
    from config.celery import app

    route = app.amqp.router.route({}, encode_items.name, args=(1, [1]), kwargs={})
    assert encode_items.name == "sotto.catalog.encode_items"
    assert route["queue"].name == f"{settings.SOTTO['QUEUE_PREFIX']}encode"


def test_encode_items_acks_late_and_retries_a_bounded_number_of_times():
    assert encode_items.acks_late is True
    assert encode_items.reject_on_worker_lost is True
    assert encode_items.max_retries == MAX_RETRIES == 3
    assert encode_items.soft_time_limit and encode_items.time_limit


def test_a_batch_that_keeps_failing_is_retried_then_marked_failed_with_the_reason(tenant_a, monkeypatch):
    from apps.catalog import tasks
    from apps.catalog.models import EncodingStatus, Item
    from apps.catalog.selectors import item_pks_by_external_ids
    from apps.catalog.services import items_upsert
    from apps.catalog.validation import parse_items
    from apps.core.tenant_db import tenant_context

    items_upsert(tenant_id=tenant_a.tenant.id, items=parse_items([{"id": "1", "title": "Heat"}]))
    pks = list(item_pks_by_external_ids(tenant_a.tenant.id, ["1"]).values())
    attempts = []

    def flaky(**kwargs):
        attempts.append(kwargs)
        raise RuntimeError("database went away")

    monkeypatch.setattr(tasks, "items_encode", flaky)
    encode_items.apply(args=[tenant_a.tenant.id, pks])
    assert len(attempts) == MAX_RETRIES + 1
    with tenant_context(tenant_a.tenant.id):
        item = Item.objects.get(pk=pks[0])
    assert item.encoding_status == EncodingStatus.FAILED
    assert item.encoding_error == "RuntimeError: database went away"
