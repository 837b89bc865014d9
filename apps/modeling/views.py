"""Training runs, the privacy budget and popularity releases over HTTP (scope ``train``).

Views only translate. The ledger has no write endpoint at all: charges happen inside the
services that release something, and there is no PUT/PATCH/DELETE anywhere here (405).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.api.base import TenantAPIView
from apps.core.errors import DomainError
from apps.modeling import selectors, services


def _epsilon(request: Request) -> Any:
    body = request.data
    if not isinstance(body, dict) or "epsilon" not in body:
        raise DomainError('expected a JSON object {"epsilon": <positive number>}', details={"epsilon": "is required"})
    return body["epsilon"]


class TrainingRunsView(TenantAPIView):
    """``POST``: charge ε and queue a DP training run (202). ``GET``: the tenant's runs, newest first."""

    scope = "train"

    @extend_schema(request=OpenApiTypes.OBJECT, responses={202: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT,
                                                            409: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        run = services.training_run_start(tenant_id=self.tenant_id, epsilon=_epsilon(request), actor=self.principal.actor)
        return Response(run, status=202)

    @extend_schema(operation_id="v1_training_runs_list", responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response({"runs": selectors.training_runs_for_tenant(tenant_id=self.tenant_id, limit=50)})


class TrainingRunView(TenantAPIView):
    """Status (queued, running with epoch and loss, succeeded, failed) and the final ε of one run."""

    scope = "train"

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 404: OpenApiTypes.OBJECT})
    def get(self, request: Request, run_id: int) -> Response:
        return Response(selectors.training_run_get(tenant_id=self.tenant_id, run_id=run_id))


class PrivacyBudgetView(TenantAPIView):
    """Total, spent, remaining and every ledger entry (read-only)."""

    scope = "train"

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response(selectors.privacy_budget(tenant_id=self.tenant_id))


class PopularityReleaseView(TenantAPIView):
    """``POST {"epsilon"}``: charge ε and release DP item popularity for cold start (201)."""

    scope = "train"

    @extend_schema(request=OpenApiTypes.OBJECT, responses={201: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        release = services.popularity_release_create(
            tenant_id=self.tenant_id, epsilon=_epsilon(request), actor=self.principal.actor
        )
        return Response(release, status=201)
