"""The one base class for tenant API views: authentication, scope, tenant-scoped transaction.

Every request runs in one transaction whose RLS tenant is the key's tenant, so a query that
forgets its tenant filter still sees only that tenant. Subclasses cannot override ``dispatch``
or ``initial`` (enforced at class creation), so no view can skip the scoping.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import transaction
from django.http import HttpRequest, HttpResponseBase
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.core.context import tenant_var
from apps.core.tenant_db import activate_tenant
from apps.tenancy.authn import KeyPrincipal

_SEALED = ("dispatch", "initial")


class TenantAPIView(APIView):
    scope: ClassVar[str | dict[str, str]] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _SEALED:
            if name in cls.__dict__:
                raise TypeError(f"{cls.__name__} may not override {name}(): tenant scoping lives there")

    @classmethod
    def scope_for(cls, method: str) -> str:
        if isinstance(cls.scope, dict):
            return cls.scope.get(method.upper(), cls.scope.get("*", ""))
        return cls.scope

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        with transaction.atomic():
            return super().dispatch(request, *args, **kwargs)

    def perform_authentication(self, request: Request) -> None:
        super().perform_authentication(request)
        principal = request.auth
        if isinstance(principal, KeyPrincipal):
            # For middleware (SLO measurement, access log): the tenant of every answer from here on,
            # 403 and 429 included, known without a database hit.
            request._request.sotto_tenant_id = principal.tenant_id  # type: ignore[attr-defined]
            request._request.sotto_tenant_slug = principal.tenant_slug  # type: ignore[attr-defined]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        principal = self.principal
        activate_tenant(principal.tenant_id)
        tenant_var.set(principal.tenant_slug)

    @property
    def principal(self) -> KeyPrincipal:
        auth = self.request.auth
        assert isinstance(auth, KeyPrincipal)
        return auth

    @property
    def tenant_id(self) -> int:
        return self.principal.tenant_id
