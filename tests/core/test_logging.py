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
