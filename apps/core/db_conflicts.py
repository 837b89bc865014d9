"""Transient write conflicts (deadlock, serialization failure): retried inside the server, never a 5xx.

PostgreSQL aborts one transaction of a lock cycle (SQLSTATE 40P01) or of a serialization
anomaly (40001) and says the whole transaction may simply be run again. Callers that own the
outermost transaction (``TenantAPIView.dispatch``) rerun it a few times with jittered backoff;
a conflict that outlives the attempts becomes a 503 with ``Retry-After``, never a 500.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError

__all__ = ["CONFLICT_ATTEMPTS", "TRANSIENT_SQLSTATES", "is_transient_conflict", "run_with_conflict_retry"]

T = TypeVar("T")

TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
CONFLICT_ATTEMPTS = 4


def is_transient_conflict(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) is a deadlock or serialization failure of PostgreSQL.

    >>> is_transient_conflict(ValueError("no"))
    False
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if (
            getattr(cur, "sqlstate", None) in TRANSIENT_SQLSTATES
            or getattr(cur, "pgcode", None) in TRANSIENT_SQLSTATES
        ):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def run_with_conflict_retry(
    attempt: Callable[[], T],
    *,
    attempts: int = CONFLICT_ATTEMPTS,
    on_retry: Callable[[int, BaseException], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``attempt`` (one whole transaction) again after a transient conflict, up to ``attempts`` times.

    ``attempt`` must open and close its own outermost transaction, so that a rerun starts from a
    clean slate; any other exception, and the last conflict, propagate unchanged.

    >>> calls = []
    >>> class Deadlock(OperationalError):
    ...     sqlstate = "40P01"
    >>> def flaky() -> str:
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise Deadlock("deadlock detected")
    ...     return "ok"
    >>> run_with_conflict_retry(flaky, sleep=lambda s: None), len(calls)
    ('ok', 3)
    """
    for n in range(1, attempts + 1):
        try:
            return attempt()
        except OperationalError as exc:
            if n == attempts or not is_transient_conflict(exc):
                raise
            if on_retry is not None:
                on_retry(n, exc)
            sleep(random.uniform(0.005, 0.02) * 2 ** (n - 1))  # noqa: S311 - jitter, not a secret
    raise AssertionError("unreachable")
