"""OpenAPI: the bearer security scheme of ``ApiKeyAuthentication`` (imported by ``ApiConfig.ready``),
the one ``Error`` component every 4xx/503 answer refers to, and the answers every key-protected
operation can give (a postprocessing hook, in settings).

Views declare the errors their own code raises with :func:`errors` (400, 404, 409, 413); the hook
adds what the shared machinery answers for every operation, so no view can forget it: 401/403/429
(authentication, scope, throttle), 413 on every operation with a body (Django's body size limit),
and 503 (``TenantAPIView.dispatch``: a write conflict that outlived its retries, or no database).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[misc,no-untyped-call]
    target_class = "apps.api.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "sotto_<prefix>_<secret>",
            "description": "A tenant API key: `Authorization: Bearer <api key>`. Scopes are listed per operation.",
        }


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every API error (``apps.api.errors``).",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {
                    "type": "string",
                    "description": "machine-readable: invalid, not_found, conflict, ...",
                },
                "message": {"type": "string", "description": "for a human: what is wrong and what to do"},
                # free-form on purpose: field -> problem, a list of per-index problems, or limits
                "details": {"description": "what the error is about (its shape depends on the code)"},
            },
            "required": ["code", "message", "details"],
        },
    },
    "required": ["error"],
}
ERROR_REF: dict[str, str] = {"$ref": "#/components/schemas/Error"}
# What each status means across the API; a view passes its own wording where it says more.
ERROR_DESCRIPTIONS = {
    400: "Invalid input: the message and details name what is wrong (nothing was changed)",
    404: "Not found (another tenant's object answers exactly like one that does not exist)",
    409: "Conflict with the current state (the code says which)",
    413: "Too large: the body over the size limit, or a batch over its item limit",
}
KEY_ERRORS = {
    "401": "No API key, or a malformed, unknown or revoked one",
    "403": "The key lacks the operation's scope",
    "429": "The key is over its rate limit (see Retry-After)",
}
BODY_TOO_LARGE = "The request body is larger than the server's limit (SOTTO_MAX_BODY_BYTES)"
UNAVAILABLE_WRITE = (
    "Nothing was stored, send the same request again after Retry-After: concurrent writes kept "
    "conflicting (write_conflict) or the database is unavailable (database_unavailable)"
)
UNAVAILABLE_READ = "The database is unavailable (database_unavailable); retry after Retry-After"
_WRITES = frozenset({"post", "put", "patch", "delete"})
_RETRY_AFTER = {
    "Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait before retrying"}
}


def errors(*codes: int, described: dict[int, str] | None = None) -> dict[int, OpenApiResponse]:
    """``@extend_schema(responses=...)`` entries for the errors a view raises, each the ``Error`` component.

    A raw reference, not a serializer: the component is defined once (``ERROR_SCHEMA``, installed by
    the hook below), so the answers views declare and the ones the hook adds cannot drift apart.
    """
    wording = {**ERROR_DESCRIPTIONS, **(described or {})}
    return {
        code: OpenApiResponse(response=ERROR_REF, description=wording[code])
        for code in (*codes, *(described or {}))
    }


def _error(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    if retry_after:
        answer["headers"] = _RETRY_AFTER
    return answer


def document_key_errors(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """Add 401, 403, 429, 503 (and 413 where a body is taken) to each operation that takes the API key.

    Declared answers stay as the view wrote them; every added one is the ``Error`` component, and
    429/503 carry ``Retry-After``.
    """
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or not any(
                "apiKey" in s for s in operation.get("security", [])
            ):
                continue
            responses = operation.setdefault("responses", {})
            for code, description in KEY_ERRORS.items():
                responses.setdefault(code, _error(description, retry_after=code == "429"))
            if "requestBody" in operation:
                responses.setdefault("413", _error(BODY_TOO_LARGE))
            responses.setdefault(
                "503", _error(UNAVAILABLE_WRITE if method in _WRITES else UNAVAILABLE_READ, retry_after=True)
            )
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    return result
