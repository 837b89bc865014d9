"""OpenAPI: the bearer security scheme of ``ApiKeyAuthentication`` (imported by ``ApiConfig.ready``),
and the answers every key-protected operation can give (a postprocessing hook, in settings)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[misc,no-untyped-call]
    target_class = "apps.api.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "sotto_<prefix>_<secret>",
                "description": "A tenant API key: `Authorization: Bearer <api key>`. Scopes are listed per operation."}


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every API error (``apps.api.errors``).",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
            "required": ["code", "message", "details"],
        },
    },
    "required": ["error"],
}
KEY_ERRORS = {
    "401": "No API key, or a malformed, unknown or revoked one",
    "403": "The key lacks the operation's scope",
    "429": "The key is over its rate limit (see Retry-After)",
}


def document_key_errors(result: dict[str, Any], generator: Any, **kwargs: Any) -> dict[str, Any]:
    """Add 401, 403 and 429 (the JSON error) to each operation that takes the API key, unless declared."""
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or not any("apiKey" in s for s in operation.get("security", [])):
                continue
            for code, description in KEY_ERRORS.items():
                operation.setdefault("responses", {}).setdefault(code, {"description": description, **error})
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    return result
