"""Training runs, the privacy budget, model versions and popularity releases over HTTP.

Reads and releases need scope ``train``; changing the budget policy and activating a version need
``admin``. Views only translate. The ledger has no write endpoint at all: charges happen inside the
services that release something; the budget PATCH changes the policy, never the ledger.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.api.base import TenantAPIView
from apps.api.schema import errors
from apps.api.serializers import BudgetPolicy
from apps.core.errors import DomainError
from apps.modeling import budget, lifecycle, popularity_release, selectors, serializers, services
from apps.tenancy.models import Tenant


def _epsilon(request: Request) -> Any:
    body = request.data
    if not isinstance(body, dict) or "epsilon" not in body:
        raise DomainError(
            'expected a JSON object {"epsilon": <positive number>}', details={"epsilon": "is required"}
        )
    return body["epsilon"]


class TrainingRunsView(TenantAPIView):
    """``POST``: charge ε and queue a DP training run (202). ``GET``: the tenant's runs, newest first."""

    scope = "train"

    @extend_schema(
        request=serializers.EpsilonInSerializer,
        responses={
            202: serializers.TrainingRunOutSerializer,
            **errors(
                400,
                described={
                    409: "over the remaining budget, too few users with events, or a misconfigured tenant"
                },
            ),
        },
    )
    def post(self, request: Request) -> Response:
        run = services.training_run_start(
            tenant_id=self.tenant_id, epsilon=_epsilon(request), actor=self.principal.actor
        )
        return Response(run, status=202)

    @extend_schema(
        operation_id="v1_training_runs_list", responses={200: serializers.TrainingRunsOutSerializer}
    )
    def get(self, request: Request) -> Response:
        return Response({"runs": selectors.training_runs_for_tenant(tenant_id=self.tenant_id, limit=50)})


class TrainingRunView(TenantAPIView):
    """Status (queued, running with epoch and loss, succeeded, failed) and the final ε of one run."""

    scope = "train"

    @extend_schema(responses={200: serializers.TrainingRunOutSerializer, **errors(404)})
    def get(self, request: Request, run_id: int) -> Response:
        return Response(selectors.training_run_get(tenant_id=self.tenant_id, run_id=run_id))


class PrivacyBudgetView(TenantAPIView):
    """``GET``: the policy, spent and left (in the renewal window), next renewal, every ledger entry.
    ``PATCH {"epsilon_total", "delta", "renewal_days"}`` (scope ``admin``): change the policy
    within the operator's cap; refused if the retraining schedule would no longer fit."""

    scope = {"GET": "train", "PATCH": "admin"}

    @extend_schema(responses={200: serializers.PrivacyBudgetOutSerializer})
    def get(self, request: Request) -> Response:
        return Response(selectors.privacy_budget(tenant_id=self.tenant_id))

    @extend_schema(
        request=BudgetPolicy, responses={200: serializers.PrivacyBudgetOutSerializer, **errors(400)}
    )
    def patch(self, request: Request) -> Response:
        body = BudgetPolicy(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        budget.privacy_budget_set(
            tenant=Tenant.objects.get(pk=self.tenant_id),
            actor=self.principal.actor,
            check=lifecycle.schedule_check(self.tenant_id),
            **body.validated_data,
        )
        return Response(selectors.privacy_budget(tenant_id=self.tenant_id))


class ModelVersionsView(TenantAPIView):
    """The tenant's model versions, newest first, with what ran, ε, metrics and the gate's verdict."""

    scope = "train"

    @extend_schema(responses={200: serializers.ModelVersionsOutSerializer})
    def get(self, request: Request) -> Response:
        return Response({"versions": selectors.model_versions(tenant_id=self.tenant_id)})


class ModelVersionActivateView(TenantAPIView):
    """Serve this version (rollback is activating the previous one): 200 when its served vectors
    exist, 202 while a worker re-materialises them; audited. A rejected version is an override."""

    scope = "admin"

    @extend_schema(
        request=None,
        responses={
            200: serializers.ModelActivatedOutSerializer,
            202: serializers.ModelActivationQueuedOutSerializer,
            **errors(
                404,
                described={
                    400: "the version is not a positive integer",
                    409: "already active, or not activatable (already_active, not_activatable)",
                },
            ),
        },
    )
    def post(self, request: Request, version: int) -> Response:
        state, done = lifecycle.model_version_activate(
            tenant_id=self.tenant_id, version=version, actor=self.principal.actor
        )
        return Response(state, status=200 if done else 202)


class PopularityReleaseView(TenantAPIView):
    """``POST {"epsilon"}``: charge ε and release DP item popularity for cold start (201)."""

    scope = "train"

    @extend_schema(
        request=serializers.EpsilonInSerializer,
        responses={
            201: serializers.PopularityReleaseOutSerializer,
            **errors(400, described={409: "over the remaining budget, or no user has events"}),
        },
    )
    def post(self, request: Request) -> Response:
        release = popularity_release.popularity_release_create(
            tenant_id=self.tenant_id, epsilon=_epsilon(request), actor=self.principal.actor
        )
        return Response(release, status=201)
