"""Errors a caller can act on; the API turns them into ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Every ``error.code`` the API can answer with; each member *is* its string, so bodies are unchanged."""

    # generic, by HTTP status (``apps.api.errors``)
    INVALID = "invalid"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    CONFLICT = "conflict"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    RATE_LIMITED = "rate_limited"
    ERROR = "error"
    SERVER_ERROR = "server_error"
    # domain
    ALREADY_ACTIVE = "already_active"
    AUDIT_CHAIN_BROKEN = "audit_chain_broken"
    BUDGET_EXCEEDED = "budget_exceeded"
    INVALID_EVENTS = "invalid_events"
    MISCONFIGURED = "misconfigured"
    NO_PREVIOUS_VERSION = "no_previous_version"
    NOT_ACTIVATABLE = "not_activatable"
    NOT_ENCODED = "not_encoded"
    NOT_ENOUGH_USERS = "not_enough_users"
    SCHEDULE_EXCEEDS_BUDGET = "schedule_exceeds_budget"
    SEARCH_UNAVAILABLE = "search_unavailable"


class DomainError(Exception):
    status = 400
    code: str = ErrorCode.INVALID

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        code: ErrorCode | str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else {}
        if code:
            self.code = code
        if status:
            self.status = status


class NotFound(DomainError):
    status = 404
    code = ErrorCode.NOT_FOUND


class Conflict(DomainError):
    status = 409
    code = ErrorCode.CONFLICT


class PayloadTooLarge(DomainError):
    status = 413
    code = ErrorCode.PAYLOAD_TOO_LARGE
