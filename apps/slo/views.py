"""``GET /api/v1/slo``: the calling tenant's objectives and current status (scope ``serve``)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.api.base import TenantAPIView
from apps.slo.selectors import slo_status_for_tenant
from apps.slo.serializers import SloStatusOutSerializer


class SloStatusView(TenantAPIView):
    """Per endpoint class: the objective; rolling 1 h / 24 h / 28 d p50/p95/p99, share good,
    availability and burn rates; the 28-day error budget left (bounded to -1, the raw figure in
    ``*_raw``); and the open burn-rate alerts. Below ``SLO_MIN_SAMPLE`` requests a window has no
    burn rate and a class no budget: ``summary`` says "not enough traffic yet (N of M requests)"."""

    scope = "serve"

    @extend_schema(responses={200: SloStatusOutSerializer}, summary="The tenant's SLO objectives and status")
    def get(self, request: Request) -> Response:
        body = slo_status_for_tenant(tenant_id=self.tenant_id).as_dict()
        objectives = {cls: status.pop("objective") for cls, status in body["classes"].items()}
        return Response(
            {
                "tenant": self.principal.tenant_slug,
                "now": body["now"],
                "objectives": objectives,
                "status": body["classes"],
                "open_alerts": body["open_alerts"],
            }
        )
