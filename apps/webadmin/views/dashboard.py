"""A tenant's dashboard: latency against objectives, error budget, privacy budget, evaluation, encoding."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase

from apps.tenancy.selectors import api_keys_for_tenant
from apps.webadmin import sources
from apps.webadmin.charts import dashboard_charts
from apps.webadmin.scoping import TenantAccess, tenant_page
from apps.webadmin.views.common import tenant_render

KEYS_LISTED = 5


@tenant_page("dashboard")
def dashboard(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    tenant_id = access.tenant.id
    active_keys = list(
        api_keys_for_tenant(tenant_id=tenant_id).filter(revoked_at__isnull=True).order_by("name", "pk")
    )
    encoding = sources.encoding_progress(tenant_id=tenant_id)
    privacy = sources.privacy_budget(tenant_id=tenant_id)
    charts = dashboard_charts(
        latency=sources.latency_series(tenant_id=tenant_id),
        budgets=sources.error_budgets(tenant_id=tenant_id),
        privacy=privacy,
        encoding=encoding,
    )
    context = {
        "charts": charts,
        "encoding": encoding,
        "privacy": privacy,
        "evaluation": sources.latest_evaluation(tenant_id=tenant_id),
        "active_keys": len(active_keys),
        "key_names": active_keys[:KEYS_LISTED],
        "more_keys": max(0, len(active_keys) - KEYS_LISTED),
    }
    return tenant_render(request, access, "webadmin/tenant/dashboard.html", context, section="dashboard")
