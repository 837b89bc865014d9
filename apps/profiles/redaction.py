"""Keep client user ids out of logs: Django logs the path of every 4xx/5xx, and ours carry them.

``/api/v1/users/<id>`` becomes ``/api/v1/users/<redacted>`` and a ``user=`` query parameter
(recommendations, search) loses its value, in the message, its arguments and every ``extra=``
field of a record. Django also attaches the request object itself (``extra={"request": ...}``),
whose text form is ``<WSGIRequest: PUT '/api/v1/users/<id>'>``; it is replaced by that text,
redacted. Installed by ``ProfilesConfig.ready`` on the loggers that print request paths (so
``caplog`` and every handler see redacted records) and on the root logger's handlers (so records
from any other logger are covered too). Reverse proxies and access logs outside Django need the
same rule (docs/privacy-model.md).
"""

from __future__ import annotations

import logging
import re
from typing import Any

# Idempotent: a record may pass through several filters (logger, then handler); an already redacted
# value is left as it is.
# A route pattern such as ``<str:user_ref>`` (how the access log names the path) is no user id.
_USER_PATH = re.compile(r"(/api/v1/users/)(?!(?:<redacted>|<[a-z]+:[a-z_]+>)(?=[\s?#\"'>]|$))[^\s?#\"']+")
_USER_PARAM = re.compile(r"([?&]user=)(?!<redacted>(?=[&#\s\"'>]|$))[^&#\s\"']*")
_LOGGERS = ("django.request", "django.server", "django.security", "gunicorn.access", "gunicorn.error")
_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


def redact(text: str) -> str:
    return _USER_PARAM.sub(r"\1<redacted>", _USER_PATH.sub(r"\1<redacted>", text))


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if hasattr(value, "get_full_path") and hasattr(value, "method"):  # a Django request object
        try:
            return f"<{type(value).__name__}: {value.method} {redact(value.get_full_path())}>"
        except Exception:  # a half-built request must not break logging
            return f"<{type(value).__name__}>"
    return value


class RedactUserIdsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_value(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact_value(arg) for key, arg in record.args.items()}
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                setattr(record, key, _redact_value(value))
        return True


def _add_once(target: logging.Logger | logging.Handler) -> None:
    if not any(isinstance(f, RedactUserIdsFilter) for f in target.filters):
        target.addFilter(RedactUserIdsFilter())


def install() -> None:
    for name in _LOGGERS:
        _add_once(logging.getLogger(name))
    for handler in logging.getLogger().handlers:
        _add_once(handler)
