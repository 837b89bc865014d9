"""Bearer API-key authentication: 401 with a clear reason for a missing, malformed or revoked key."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from apps.tenancy.authn import KeyPrincipal, KeyRejected, authenticate_key


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, KeyPrincipal] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise exceptions.AuthenticationFailed("use 'Authorization: Bearer <api key>'")
        try:
            principal = authenticate_key(raw.strip())
        except KeyRejected as exc:
            raise exceptions.AuthenticationFailed(exc.message) from exc
        return (None, principal)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="sotto"'
