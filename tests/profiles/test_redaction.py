"""Client user ids in request paths never reach a log line, whatever field carries them."""

from __future__ import annotations

import logging

from django.test import RequestFactory
from django.utils.log import log_response

from apps.core.logging import JsonFormatter
from apps.profiles.redaction import RedactUserIdsFilter, redact

SECRET = "jane.doe+7@example.org"


def test_paths_and_user_parameters_are_redacted():
    assert (
        redact(f"GET /api/v1/users/{SECRET}?events_limit=5") == "GET /api/v1/users/<redacted>?events_limit=5"
    )
    assert (
        redact(f"/api/v1/recommendations?k=5&user={SECRET}&x=1")
        == "/api/v1/recommendations?k=5&user=<redacted>&x=1"
    )
    assert redact("/api/v1/items/42") == "/api/v1/items/42"


def test_redaction_is_idempotent():
    once = redact(f"<WSGIRequest: PUT '/api/v1/users/{SECRET}'> and /x?user={SECRET}&k=1")
    assert once == "<WSGIRequest: PUT '/api/v1/users/<redacted>'> and /x?user=<redacted>&k=1"
    assert redact(once) == once
    described = "<WSGIRequest: PUT /api/v1/users/<redacted>>"  # what the filter makes of a request object
    assert redact(described) == described


def test_djangos_own_4xx_record_is_redacted_including_the_attached_request(caplog):
    request = RequestFactory().put(f"/api/v1/users/{SECRET}")
    from django.http import HttpResponse

    with caplog.at_level(logging.WARNING, logger="django.request"):
        log_response(
            "%s: %s", "Bad Request", request.path, response=HttpResponse(status=400), request=request
        )
    record = caplog.records[-1]
    assert record.getMessage() == "Bad Request: /api/v1/users/<redacted>"
    # whatever a formatter or handler does with the attached request, it only has the redacted text
    assert record.request == "<WSGIRequest: PUT /api/v1/users/<redacted>>"
    assert SECRET not in JsonFormatter().format(record) and SECRET not in repr(vars(record))


def test_every_root_handler_redacts_records_from_any_logger():
    # the handlers settings.LOGGING configured (pytest adds its own capture handlers later)
    configured = [h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)]
    assert configured and all(any(isinstance(f, RedactUserIdsFilter) for f in h.filters) for h in configured)
    record = logging.LogRecord(
        "some.other.app", logging.INFO, __file__, 1, "saw %s", (f"/api/v1/users/{SECRET}",), None
    )
    record.path = f"/api/v1/users/{SECRET}"
    RedactUserIdsFilter().filter(record)
    assert SECRET not in JsonFormatter().format(record)
