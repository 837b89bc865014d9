"""A view names the scope it needs; a key without it gets 403 saying which scope is missing."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.tenancy.authn import KeyPrincipal


class HasTenantScope(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.auth
        if not isinstance(principal, KeyPrincipal):
            raise exceptions.NotAuthenticated("an API key is required: 'Authorization: Bearer <api key>'")
        needed = view.scope_for(request.method or "GET")
        if needed and needed not in principal.scopes:
            raise exceptions.PermissionDenied(f"this API key lacks the '{needed}' scope")
        return True
