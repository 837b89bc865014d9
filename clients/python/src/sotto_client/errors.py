"""The one exception type the client raises, carrying the server's JSON error.

Every API failure is ``{"error": {"code", "message", "details"}}`` on the wire; callers branch on
``code`` (stable, machine-readable) rather than on message text, which may change.
"""

from __future__ import annotations

from typing import Any

#: Statuses after which the server guarantees nothing was stored, so the same request may be resent:
#: 429 ``rate_limited`` and 503 ``write_conflict`` / ``database_unavailable``, all with Retry-After.
RETRYABLE_STATUSES = frozenset({429, 503})


class SottoError(Exception):
    """An API call that did not succeed.

    - ``status``: the HTTP status, 0 when no response arrived at all;
    - ``code``: the server's code (``invalid``, ``unauthenticated``, ``forbidden``, ``not_found``,
      ``conflict``, ``payload_too_large``, ``rate_limited``, ``write_conflict``,
      ``database_unavailable``, ...) or the client's own (``connection_error``, ``timeout``,
      ``bad_response``) when the server's answer is missing or not the documented shape;
    - ``message``: text for people; ``details``: the structured part (for a 400, every problem by field);
    - ``request_id``: the ``X-Request-ID`` to quote in a report (the same on every retry of one call);
    - ``retry_after``: the server's ``Retry-After`` in seconds, when it sent one;
    - ``attempts``: how many times the request was sent before giving up.
    """

    def __init__(
        self,
        *,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(f"{status} {code}: {message}" if status else f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details: Any = details if details is not None else {}
        self.request_id = request_id
        self.retry_after = retry_after
        self.attempts = attempts

    @property
    def retryable(self) -> bool:
        """Whether resending the same request later may succeed (nothing was stored this time)."""
        return self.status in RETRYABLE_STATUSES


class SottoConnectionError(SottoError):
    """No HTTP answer: the server could not be reached, the connection broke, or it timed out.

    ``status`` is 0. ``maybe_sent`` is False only when the connection was refused (nothing reached
    the server). Otherwise (a timeout, a reset) the outcome of a write is unknown: resend it only if
    it is idempotent (items by id, events by event id).
    """

    def __init__(self, *, maybe_sent: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.maybe_sent = maybe_sent
