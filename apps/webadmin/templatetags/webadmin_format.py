"""Small display filters for the admin's templates."""

from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def compact_json(value: Any) -> str:
    """``{"a": 1}`` as JSON on one line (audit details are JSON; Python's repr would mislead)."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), sort_keys=True, default=str)


@register.filter
def percent(value: Any) -> str:
    """A share as a percentage with at most two decimals: 0.999 -> "99.9%", -0.5 -> "-50%"."""
    try:
        number = float(value) * 100
    except (TypeError, ValueError):
        return ""
    return f"{round(number, 2):g}%"
