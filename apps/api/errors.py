"""One error shape for every API failure, and JSON 404/500 pages for API paths."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core.errors import DomainError, ErrorCode

logger = logging.getLogger(__name__)

_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.INVALID,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    406: ErrorCode.NOT_ACCEPTABLE,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    429: ErrorCode.RATE_LIMITED,
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details if details is not None else {}}}


def _message(detail: Any) -> str:
    if isinstance(detail, list) and detail:
        return _message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        return f"{key}: {_message(value)}"
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status)
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            error_body(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"the request body is larger than {limit} bytes",
                {"limit_bytes": limit},
            ),
            status=413,
        )
    if isinstance(exc, Http404):
        return Response(error_body(ErrorCode.NOT_FOUND, "not found"), status=404)
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = _CODES.get(response.status_code, ErrorCode.ERROR)
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body(
            ErrorCode.INVALID, "the request is invalid: " + _message(exc.detail), exc.detail
        )
    elif isinstance(exc, exceptions.APIException):
        response.data = error_body(code, _message(exc.detail))
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Bearer realm="sotto"'
    return response


def json_404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body(ErrorCode.NOT_FOUND, "no such endpoint"), status=404)


def json_500(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        error_body(ErrorCode.SERVER_ERROR, "internal error; quote the X-Request-ID when reporting"),
        status=500,
    )
