"""One accessor for Sotto's own settings (the SOTTO dict), so defaults and typos live in one place."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def sotto_setting(name: str) -> Any:
    try:
        return settings.SOTTO[name]
    except KeyError as exc:
        raise KeyError(f"unknown Sotto setting {name!r}; add it to SOTTO in config/settings/base.py") from exc
