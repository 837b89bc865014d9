"""Keep client user ids out of logs: Django logs the path of every 4xx/5xx, and ours carry them.

``/api/v1/users/<id>`` becomes ``/api/v1/users/<redacted>`` and a ``user=`` query parameter
(recommendations, search) loses its value, in every record of the loggers that print request
paths. Installed by ``ProfilesConfig.ready``. Reverse proxies and access logs outside Django
need the same rule (docs/privacy-model.md).
"""

from __future__ import annotations

import logging
import re
from typing import Any

_USER_PATH = re.compile(r"(/api/v1/users/)[^\s?#\"']+")
_USER_PARAM = re.compile(r"([?&]user=)[^&#\s\"']*")
_LOGGERS = ("django.request", "django.server", "django.security", "gunicorn.access", "gunicorn.error")


def redact(text: str) -> str:
    return _USER_PARAM.sub(r"\1<redacted>", _USER_PATH.sub(r"\1<redacted>", text))


def _redact_arg(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactUserIdsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact_arg(arg) for key, arg in record.args.items()}
        return True


def install() -> None:
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactUserIdsFilter) for f in logger.filters):
            logger.addFilter(RedactUserIdsFilter())
