"""Small display filters for the admin's templates."""

from __future__ import annotations

import json
from typing import Any

from django import template

from apps.webadmin import formatting

register = template.Library()


@register.filter
def compact_json(value: Any) -> str:
    """``{"a": 1}`` as JSON on one line (audit details are JSON; Python's repr would mislead)."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), sort_keys=True, default=str)


@register.filter
def pretty_json(value: Any) -> str:
    """JSON indented for reading (an audit row's details, expanded)."""
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)


@register.filter
def percent(value: Any) -> str:
    """A share as a percentage with one decimal: 0.999 -> "99.9%", -0.5 -> "-50.0%", 0.9995 -> "99.95%"
    (a share short of 1 never reads as 100%; ``formatting.percent``)."""
    return formatting.percent(value)


@register.filter
def sig(value: Any, digits: Any = 4) -> str:
    """A metric to ``digits`` (4) significant digits: 0.08234567 -> "0.08235" (``formatting.significant``)."""
    try:
        wanted = int(digits)
    except (TypeError, ValueError):
        wanted = 4
    return formatting.significant(value, wanted)


@register.filter
def eps(value: Any) -> str:
    """A privacy budget ε with two decimals: 0.3333 -> "0.33" (``formatting.epsilon``)."""
    return formatting.epsilon(value)


@register.filter
def delta(value: Any) -> str:
    """A δ with two significant digits: 1e-05 -> "1e-5" (``formatting.delta``)."""
    return formatting.delta(value)
