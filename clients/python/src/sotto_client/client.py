"""``SottoClient``: the Sotto REST API (v1) from Python, standard library only.

What a caller may rely on:

- **Retries that are safe.** 429 ``rate_limited`` and 503 ``write_conflict`` /
  ``database_unavailable`` mean "nothing was stored, send the same request again"; the client
  does, up to ``max_retries`` times, waiting what ``Retry-After`` says (else an exponential
  backoff with jitter). Network failures are retried only where resending cannot do anything
  twice: reads, deletes, ``PUT``, items (an upsert by your id) and events (deduplicated by
  ``event_id``), and any request whose connection was refused before it was sent. Starting a
  training run charges the privacy budget, so a timeout there is raised, never resent.
- **Idempotent events.** ``events_ingest`` gives every event without an ``event_id`` a random
  one (uuid4) *in the dict you passed*, before the first attempt: the client's own retries, and
  your code resending the same list after a timeout, are deduplicated by the server.
- **Typed errors.** Every failure is a :class:`~sotto_client.errors.SottoError` with the HTTP
  status, the server's ``code``, ``message`` and ``details``, and the ``X-Request-ID``.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, MutableMapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, cast

from sotto_client.errors import RETRYABLE_STATUSES, SottoConnectionError, SottoError
from sotto_client.responses import (
    CatalogStatus,
    EventInput,
    IngestResult,
    ItemInput,
    Json,
    Recommendations,
    SearchResults,
    SimilarItems,
    UpsertResult,
)

__version__ = "0.1.0"
API_PREFIX = "/api/v1"


def _json_default(value: object) -> str:
    """Datetimes as ISO 8601 (the API wants an offset: naive values are sent as they are and refused)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _retry_after_seconds(header: str | None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date (RFC 9110, 10.2.3)."""
    if not header:
        return None
    header = header.strip()
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(tz=UTC)).total_seconds())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects become errors: urllib would resend the API key to wherever Location points (even
    another host), and turn a POST into a GET. A redirect means the ``base_url`` is wrong (http://
    where the server wants https://): it is reported, with the new location, for the caller to fix."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> None:
        return None


def _path_segment(value: str | int) -> str:
    """One URL path segment: item and user ids may hold '/', '?' or spaces."""
    return urllib.parse.quote(str(value), safe="")


class SottoClient:
    """A client for one tenant's API key.

    ``base_url`` is the server (``http://127.0.0.1:8000``); ``timeout`` applies to each attempt,
    in seconds; ``max_retries`` is how many times a retryable failure is resent after the first
    attempt (0: never); ``backoff`` and ``max_backoff`` shape the wait when the server sends no
    ``Retry-After`` (``backoff * 2**n``, jittered, at most ``max_backoff`` seconds).
    Thread-safe: it holds no connection state between calls.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        user_agent: str | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in {"http", "https"} or not parsed.netloc:
            # urllib would also open file:// and ftp:// URLs; an API client must never do that.
            raise ValueError(f"base_url must be an http:// or https:// URL, got {base_url!r}")
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._api_key = api_key
        self._user_agent = user_agent or f"sotto-client/{__version__}"
        self._opener = urllib.request.build_opener(_NoRedirect)

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        return f"SottoClient({self.base_url!r}, api_key='…', timeout={self.timeout}, max_retries={self.max_retries})"

    # --- transport -----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | float | bool | None] | None = None,
        body: Any = None,
        idempotent: bool = True,
    ) -> Any:
        """Send one API call (``path`` under ``/api/v1``) with retries; the decoded JSON answer, or None for 204.

        ``idempotent=False`` marks a call that must not be resent when its outcome is unknown
        (a timeout or a broken connection after sending): only answers that guarantee nothing
        was stored (429, 503) and refused connections are retried for it.
        """
        url = f"{self.base_url}{API_PREFIX}{path}"
        query = {k: _query_value(v) for k, v in (params or {}).items() if v is not None}
        if query:
            url = f"{url}?{urllib.parse.urlencode(query)}"
        data = None if body is None else json.dumps(body, default=_json_default).encode()
        # One id for every attempt of this call, so the server's logs tie the retries together.
        request_id = uuid.uuid4().hex
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "application/json",
            "User-Agent": self._user_agent,
            "X-Request-ID": request_id,
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._send(method, url, data, headers, request_id, attempt)
            except SottoError as exc:
                if attempt > self.max_retries or not self._should_retry(exc, idempotent):
                    raise
                time.sleep(self._delay(exc, attempt))

    def _send(
        self,
        method: str,
        url: str,
        data: bytes | None,
        headers: dict[str, str],
        request_id: str,
        attempt: int,
    ) -> Any:
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 - http(s) only, checked in __init__
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = response.status
                raw = response.read()
                answer_id = response.headers.get("X-Request-ID") or request_id
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            raise _error_from_response(exc.code, raw, exc.headers, request_id, attempt) from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            code = "timeout" if isinstance(reason, TimeoutError | socket.timeout) else "connection_error"
            raise SottoConnectionError(
                status=0,
                code=code,
                message=f"{url}: {reason}",
                request_id=request_id,
                attempts=attempt,
                maybe_sent=not isinstance(reason, ConnectionRefusedError),
            ) from exc
        except (OSError, http.client.HTTPException) as exc:  # a timeout, reset or cut-off body while reading
            code = "timeout" if isinstance(exc, TimeoutError) else "connection_error"
            raise SottoConnectionError(
                status=0, code=code, message=f"{url}: {exc}", request_id=request_id, attempts=attempt
            ) from exc
        if status == 204 or not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise SottoError(
                status=status,
                code="bad_response",
                message="the answer is not JSON",
                details={"body": raw[:200].decode(errors="replace")},
                request_id=answer_id,
                attempts=attempt,
            ) from None

    @staticmethod
    def _should_retry(exc: SottoError, idempotent: bool) -> bool:
        if exc.status in RETRYABLE_STATUSES:
            return True
        if isinstance(exc, SottoConnectionError):
            # refused: the request never left, so even a budget charge cannot happen twice
            return idempotent or not exc.maybe_sent
        return False

    def _delay(self, exc: SottoError, attempt: int) -> float:
        if exc.retry_after is not None:
            return exc.retry_after
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        # equal jitter: at least half the backoff, so clients that failed together do not retry together
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not a secret

    # --- tenant ----------------------------------------------------------------------------------

    def tenant(self) -> Json:
        """The key's tenant and scopes: a cheap authenticated ping."""
        return cast(Json, self.request("GET", "/tenant"))

    # --- catalogue -------------------------------------------------------------------------------

    def items_upsert(self, items: Sequence[ItemInput]) -> UpsertResult:
        """Create or update up to 1,000 items by your id, all or nothing; new or changed text is queued for encoding.

        Safe to resend: an item sent twice with the same content counts as ``unchanged``.
        """
        return cast(UpsertResult, self.request("POST", "/items", body={"items": list(items)}))

    def item_get(self, item_id: str) -> Json:
        """One item with its encoding state (``encoding.status``: pending, ready, failed)."""
        return cast(Json, self.request("GET", f"/items/{_path_segment(item_id)}"))

    def item_delete(self, item_id: str) -> None:
        """Delete the item, its vectors and its events."""
        self.request("DELETE", f"/items/{_path_segment(item_id)}")

    def items_list(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        status: str | None = None,
        category: str | None = None,
    ) -> Json:
        """One page of items in creation order; pass the answer's ``next_cursor`` for the next page."""
        return cast(
            Json,
            self.request(
                "GET",
                "/items",
                params={"limit": limit, "cursor": cursor, "status": status, "category": category},
            ),
        )

    def catalog_status(self) -> CatalogStatus:
        """Encoding progress: items pending, ready, failed."""
        return cast(CatalogStatus, self.request("GET", "/catalog/status"))

    def similar_items(self, item_id: str, *, k: int = 10, category: str | None = None) -> SimilarItems:
        """Nearest items by content; ``SottoError`` 409 ``not_encoded`` while the item has no vector yet."""
        return cast(
            SimilarItems,
            self.request(
                "GET", f"/items/{_path_segment(item_id)}/similar", params={"k": k, "category": category}
            ),
        )

    # --- events and end users ----------------------------------------------------------------------

    def events_ingest(
        self, events: Sequence[EventInput] | Sequence[MutableMapping[str, Any]]
    ) -> IngestResult:
        """Store up to 1,000 events, all or nothing; 201 means the next request already sees them.

        Each event without an ``event_id`` gets a uuid4 one, written into the dict you passed,
        before anything is sent: resending the same list (by this client's retries or by your
        code after a timeout) adds nothing twice, the server answers ``duplicates`` instead.
        """
        for event in events:
            if not event.get("event_id"):
                event["event_id"] = uuid.uuid4().hex
        return cast(IngestResult, self.request("POST", "/events", body={"events": list(events)}))

    def user_attributes_put(self, user: str | int, attributes: Mapping[str, Any]) -> Json:
        """Replace the user's attributes (each encrypted under the user's own key on the server)."""
        return cast(
            Json, self.request("PUT", f"/users/{_path_segment(user)}", body={"attributes": dict(attributes)})
        )

    def user_export(self, user: str | int, *, events_offset: int = 0, events_limit: int = 1000) -> Json:
        """The access export: attributes, one page of events, the real-time state summary (audited)."""
        return cast(
            Json,
            self.request(
                "GET",
                f"/users/{_path_segment(user)}",
                params={"events_offset": events_offset, "events_limit": events_limit},
            ),
        )

    def user_erase(self, user: str | int) -> Json:
        """Erase the user (events, state, attributes, key); returns the receipt. 404 for an unknown user.

        A retried erase whose first attempt did erase answers 404 ``not_found``: the user is gone either way.
        """
        return cast(Json, self.request("DELETE", f"/users/{_path_segment(user)}"))

    # --- serving ---------------------------------------------------------------------------------

    def recommendations(
        self,
        user: str | int,
        *,
        k: int = 10,
        category: str | None = None,
        exclude_seen: bool = True,
        diversity: float = 0.0,
    ) -> Recommendations:
        """Top-``k`` items for ``user``; ``strategy`` says how they were ranked (personal, content, popular, newest)."""
        params: dict[str, str | int | float | bool | None] = {"user": str(user), "k": k, "category": category}
        if not exclude_seen:
            params["exclude_seen"] = False
        if diversity:
            params["diversity"] = diversity
        return cast(Recommendations, self.request("GET", "/recommendations", params=params))

    def search(self, q: str, *, user: str | int | None = None, k: int = 10) -> SearchResults:
        """Items matching the text ``q``, blended with ``user``'s interests when given."""
        return cast(
            SearchResults,
            self.request(
                "GET", "/search", params={"q": q, "user": None if user is None else str(user), "k": k}
            ),
        )

    # --- training and privacy ----------------------------------------------------------------------

    def training_run_start(self, epsilon: float) -> Json:
        """Charge ``epsilon`` to the privacy budget and queue a DP training run (its ``id``, ``status`` queued).

        Not resent after a timeout: the outcome is unknown and a second start would charge twice;
        look at :meth:`training_runs_list` before trying again.
        """
        return cast(Json, self.request("POST", "/training-runs", body={"epsilon": epsilon}, idempotent=False))

    def training_run_get(self, run_id: int) -> Json:
        """A run's ``status``, ``progress`` (0..1), ``stage``, privacy spent and ``model_version``."""
        return cast(Json, self.request("GET", f"/training-runs/{int(run_id)}"))

    def training_runs_list(self) -> list[Json]:
        """The tenant's runs, newest first."""
        answer = cast(Json, self.request("GET", "/training-runs"))
        return cast(list[Json], answer["runs"])

    def training_run_wait(self, run_id: int, *, timeout: float = 1800.0, interval: float = 2.0) -> Json:
        """Poll a run until it ends (succeeded, rejected or failed) or ``timeout`` seconds pass; the last state."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.training_run_get(run_id)
            if run.get("status") in {"succeeded", "rejected", "failed"} or time.monotonic() >= deadline:
                return run
            time.sleep(interval)

    def privacy_budget(self) -> Json:
        """The budget policy, ε total / spent / remaining, δ, and every ledger entry."""
        return cast(Json, self.request("GET", "/privacy-budget"))

    def model_versions(self) -> list[Json]:
        """Model versions, newest first, with status, metrics and the activation gate's verdict."""
        answer = cast(Json, self.request("GET", "/model-versions"))
        return cast(list[Json], answer["versions"])


def _query_value(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _error_from_response(status: int, raw: bytes, headers: Any, request_id: str, attempt: int) -> SottoError:
    """A ``SottoError`` from a non-2xx answer: the documented JSON error, or what there is of it."""
    retry_after = _retry_after_seconds(headers.get("Retry-After") if headers is not None else None)
    answer_id = (headers.get("X-Request-ID") if headers is not None else None) or request_id
    code, message, details = f"http_{status}", raw[:200].decode(errors="replace") or f"HTTP {status}", None
    try:
        error = json.loads(raw).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        details = error.get("details")
    elif 300 <= status < 400:
        location = headers.get("Location") if headers is not None else None
        code, message = "redirect", f"the server redirects to {location}: use that as base_url"
        details = {"location": location}
    return SottoError(
        status=status,
        code=code,
        message=message,
        details=details,
        request_id=answer_id,
        retry_after=retry_after,
        attempts=attempt,
    )
