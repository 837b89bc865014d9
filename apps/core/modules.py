"""Optional wiring: an app's URLs are routed only when the app ships them."""

from __future__ import annotations

import importlib.util


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
