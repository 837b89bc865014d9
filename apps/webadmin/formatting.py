"""How the admin writes numbers: metrics to a few significant digits, ε to two decimals, shares as
percentages with one decimal. Pure functions (the template filters in ``templatetags`` call them),
so a page never shows ``0.08234567891`` or ``1e-05`` as Python happens to print it.
"""

from __future__ import annotations

import math
from typing import Any


def _number(value: Any) -> float | None:
    """A finite float for int/float/Decimal/numeric strings; None for anything else (bools included)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _strip(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def significant(value: Any, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits, trailing zeros dropped; text that is not a number
    is returned as it is (an empty string for None).

    Large numbers keep their integer digits (no exponent); numbers under 1e-4 use a short exponent.

    >>> significant(0.08234567891), significant(1.0), significant(12345.678), significant(0.000012345)
    ('0.08235', '1', '12346', '1.234e-5')
    >>> significant(-2.5e-7, 2), significant(0), significant(7), significant("n/a"), significant(None)
    ('-2.5e-7', '0', '7', 'n/a', '')
    """
    number = _number(value)
    if number is None:
        return "" if value is None else str(value)
    if isinstance(value, int) or number == 0:
        return str(int(number)) if number.is_integer() else str(value)
    digits = max(1, int(digits))
    sign = "-" if number < 0 else ""
    size = abs(number)
    if math.floor(math.log10(size)) < digits - 1:
        # Round first, so 9.99996 becomes 10 and is then written with the digits of its new magnitude.
        size = float(f"{size:.{digits - 1}e}")
    exponent = math.floor(math.log10(size))
    if exponent < -4:
        mantissa, power = f"{size:.{digits - 1}e}".split("e")
        return f"{sign}{_strip(mantissa)}e{int(power)}"
    if exponent >= digits - 1:
        return f"{sign}{round(size)}"
    return sign + _strip(f"{size:.{digits - 1 - exponent}f}")


def epsilon(value: Any) -> str:
    """A privacy budget ε with two decimals; a positive ε under 0.005 keeps two significant digits
    instead of reading as 0.00.

    >>> epsilon(2), epsilon(0.3333333), epsilon(0.001234), epsilon(0), epsilon(None)
    ('2.00', '0.33', '0.0012', '0.00', '')
    """
    number = _number(value)
    if number is None:
        return "" if value is None else str(value)
    if number != 0 and abs(number) < 0.005:
        return significant(number, 2)
    return f"{number:.2f}"


def percent(value: Any, decimals: int = 1) -> str:
    """A share (0..1, negative when overspent) as a percentage with one decimal. A share that is not
    exactly 0 or 1 never reads as 0.0% or 100.0%: it gets more decimals (up to four) instead, so an
    availability target of 0.9995 reads 99.95%, not 100.0%.

    >>> percent(0.5), percent(0.999), percent(0.9995), percent(-0.5), percent(1), percent(0.123456)
    ('50.0%', '99.9%', '99.95%', '-50.0%', '100.0%', '12.3%')
    >>> percent(None), percent("x")
    ('', '')
    """
    number = _number(value)
    if number is None:
        return ""
    share = number * 100
    for more in range(decimals, 5):
        text = f"{share:.{more}f}"
        shown = float(text)
        if not ((shown == 100 and share != 100) or (shown == 0 and share != 0)):
            break
    else:  # indistinguishable even with four decimals: say it plainly
        text = f"{share:.{decimals}f}"
    if float(text) == 0:
        text = text.lstrip("-")
    return f"{text}%"


def delta(value: Any) -> str:
    """A δ (usually far below 1e-4) with two significant digits: ``1e-5``, ``1.6e-3``.

    >>> delta(1e-05), delta(0.0016393442622950820), delta(None)
    ('1e-5', '1.6e-3', '')
    """
    number = _number(value)
    if number is None:
        return "" if value is None else str(value)
    if number == 0:
        return "0"
    mantissa, power = f"{number:.1e}".split("e")
    return f"{_strip(mantissa)}e{int(power)}"
