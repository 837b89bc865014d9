"""Item payload rules: every problem named with its item and field, the whole batch refused."""

import pytest

from apps.catalog.validation import MAX_BATCH, content_hash, parse_item, parse_items
from apps.core.errors import DomainError, PayloadTooLarge


def test_a_valid_item_is_normalised():
    item = parse_item({"id": 7, "title": "  Heat (1995) ", "categories": ["Action", "Crime", "Action"]})
    assert item.external_id == "7"
    assert item.title == "Heat (1995)"
    assert item.categories == ("Action", "Crime")
    assert item.available is True
    assert item.content_text == "Heat (1995). Action, Crime"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"id": "1"}, "title"),
        ({"id": "1", "title": "  "}, "title"),
        ({"title": "x"}, "id"),
        ({"id": True, "title": "x"}, "id"),
        ({"id": "1", "title": "x", "categories": "Action"}, "categories"),
        ({"id": "1", "title": "x", "categories": ["Action", 3]}, "categories"),
        ({"id": "1", "title": "x", "attributes": {"nested": {"a": 1}}}, "attributes"),
        ({"id": "1", "title": "x", "attributes": {"n": float("nan")}}, "attributes"),
        ({"id": "1", "title": "x", "attributes": ["a"]}, "attributes"),
        ({"id": "1", "title": "x", "available": "yes"}, "available"),
        ({"id": "1", "title": "x" * 501}, "title"),
        ({"id": "1", "title": "x", "description": "d" * 20_001}, "description"),
        ({"id": "1", "title": "nul\x00byte"}, "title"),
        ({"id": "1", "title": "x", "colour": "red"}, "item"),
    ],
)
def test_it_names_the_bad_field(raw, field):
    with pytest.raises(DomainError) as info:
        parse_items([raw])
    assert info.value.status == 400
    problem = info.value.details["items"][0]
    assert problem["index"] == 0
    assert field in problem["errors"]


def test_one_bad_item_refuses_the_whole_batch_and_lists_every_problem():
    raw = [
        {"id": "1", "title": "ok"},
        {"id": "2"},
        {"id": "3", "title": "ok"},
        {"id": "4", "categories": [1]},
    ]
    with pytest.raises(DomainError) as info:
        parse_items(raw)
    assert [p["index"] for p in info.value.details["items"]] == [1, 3]
    assert "nothing was written" in info.value.message


def test_an_id_sent_twice_in_one_batch_is_an_error():
    with pytest.raises(DomainError) as info:
        parse_items([{"id": "1", "title": "a"}, {"id": 1, "title": "b"}])
    assert info.value.details["items"][0]["index"] == 1


def test_more_than_1000_items_is_payload_too_large():
    with pytest.raises(PayloadTooLarge):
        parse_items([{"id": str(i), "title": "t"} for i in range(MAX_BATCH + 1)])
    assert len(parse_items([{"id": str(i), "title": "t"} for i in range(MAX_BATCH)])) == MAX_BATCH


def test_the_content_hash_covers_what_the_encoder_reads_and_nothing_else():
    a = parse_item(
        {"id": "1", "title": "T", "description": "D", "attributes": {"price": 1}, "available": True}
    )
    b = parse_item(
        {"id": "1", "title": "T", "description": "D", "attributes": {"price": 2}, "available": False}
    )
    c = parse_item({"id": "1", "title": "T", "description": "D2"})
    assert a.content_hash == b.content_hash == content_hash("T. D")
    assert c.content_hash != a.content_hash
