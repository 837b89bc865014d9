"""Structured JSON logs with request id and tenant; end-user ids and attributes never reach here."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from apps.core.context import request_id_var, tenant_var


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.tenant = tenant_var.get()
        return True


# Attributes every LogRecord has; anything else was passed with ``extra=`` and is emitted as a field.
_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "tenant",
}


_PLAIN = (dict, list, int, float, bool, type(None))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "tenant": getattr(record, "tenant", "-"),
        }
        for key, value in vars(record).items():
            # Only plain data: objects such as Django's ``request`` would print raw paths that can
            # carry end-user ids (the redaction filter sees only the message).
            if key not in _STANDARD and not key.startswith("_") and isinstance(value, _PLAIN):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False, default=str)
