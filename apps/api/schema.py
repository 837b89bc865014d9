"""OpenAPI: the bearer security scheme of ``ApiKeyAuthentication`` (imported by ``ApiConfig.ready``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[misc,no-untyped-call]
    target_class = "apps.api.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "sotto_<prefix>_<secret>",
                "description": "A tenant API key: `Authorization: Bearer <api key>`. Scopes are listed per operation."}
