"""The one base class for tenant API views: authentication, scope, tenant-scoped transaction.

Every request runs in one transaction whose RLS tenant is the key's tenant, so a query that
forgets its tenant filter still sees only that tenant. Subclasses cannot override ``dispatch``
or ``initial`` (enforced at class creation), so no view can skip the scoping.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError, transaction
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.api.errors import error_body
from apps.core.context import tenant_var
from apps.core.db_conflicts import CONFLICT_ATTEMPTS, is_transient_conflict, run_with_conflict_retry
from apps.core.tenant_db import activate_tenant
from apps.tenancy.authn import KeyPrincipal

_SEALED = ("dispatch", "initial")

logger = logging.getLogger(__name__)


def _replayable(request: HttpRequest) -> bool:
    """Buffer the body so a rerun parses it again; multipart uploads (streamed to disk) are not rerun."""
    if request.content_type == "multipart/form-data":
        return False
    try:
        request.body  # noqa: B018 - caches the body on the request for every attempt
    except RequestDataTooBig:
        return False  # the parser raises it again inside DRF, which answers 413
    return True


def _unavailable(code: str, message: str) -> JsonResponse:
    response = JsonResponse(error_body(code, message), status=503)
    response["Retry-After"] = "1"
    return response


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
        """Run the request in one transaction; rerun it whole after a deadlock or serialization failure.

        A conflict that outlives the attempts, or a database that cannot be reached, answers 503
        with a JSON error and ``Retry-After``: the transaction was rolled back, nothing was stored.
        """

        def attempt() -> HttpResponseBase:
            with transaction.atomic():
                return super(TenantAPIView, self).dispatch(request, *args, **kwargs)

        def retried(n: int, exc: BaseException) -> None:
            logger.warning(
                "write conflict on %s %s (attempt %d), rerunning: %s",
                request.method,
                request.path,
                n,
                type(exc).__name__,
            )

        attempts = CONFLICT_ATTEMPTS if _replayable(request) else 1
        try:
            return run_with_conflict_retry(attempt, attempts=attempts, on_retry=retried)
        except (OperationalError, InterfaceError) as exc:
            if is_transient_conflict(exc):
                logger.warning(
                    "write conflict on %s %s persisted after %d attempts",
                    request.method,
                    request.path,
                    attempts,
                )
                return _unavailable(
                    "write_conflict", "concurrent writes kept conflicting; nothing was stored, retry"
                )
            logger.exception("database unavailable for %s %s", request.method, request.path)
            return _unavailable(
                "database_unavailable", "the database is unavailable; nothing was stored, retry"
            )

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

    def note_batch_size(self, body: Any, key: str) -> None:
        """Tell the SLO middleware how many records a batch write carries (``body[key]``), before
        validation so that a refused batch is classed by its size too; the middleware never parses."""
        records = body.get(key) if isinstance(body, dict) else None
        if isinstance(records, list):
            self.request._request.sotto_batch_size = len(records)  # type: ignore[attr-defined]

    @property
    def principal(self) -> KeyPrincipal:
        auth = self.request.auth
        assert isinstance(auth, KeyPrincipal)
        return auth

    @property
    def tenant_id(self) -> int:
        return self.principal.tenant_id
