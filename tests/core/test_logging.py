import json
import logging

from apps.core.logging import JsonFormatter, RequestContextFilter


def test_json_logs_carry_request_context_and_structured_extras():
    record = logging.LogRecord("sotto", logging.INFO, __file__, 1, "served %s", ("x",), None)
    record.http = {"route": "/api/v1/users/<str:user_ref>", "status": 200}
    RequestContextFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "served x"
    assert line["http"] == {"route": "/api/v1/users/<str:user_ref>", "status": 200}
    assert line["request_id"] == "-" and line["tenant"] == "-"
    assert "args" not in line and "levelno" not in line


def test_objects_passed_as_extras_are_not_printed():
    class Request:
        def __repr__(self) -> str:
            return "<WSGIRequest: GET '/api/v1/users/alice@example.org'>"

    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Not Found", (), None)
    record.request = Request()
    record.status_code = 404
    line = JsonFormatter().format(record)
    assert "alice@example.org" not in line
    assert json.loads(line)["status_code"] == 404
