"""Service-level objectives per endpoint class: current status, latency charts over a chosen range,
edit, reset to the default."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponseBase, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods, require_POST

from apps.core.errors import DomainError
from apps.webadmin import sources
from apps.webadmin.charts import slo_charts
from apps.webadmin.forms import ObjectiveForm
from apps.webadmin.scoping import TenantAccess, tenant_page
from apps.webadmin.sources import objective_percentile
from apps.webadmin.views.common import actor_of, tenant_render


@tenant_page("slo")
def objectives(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    """The status table and the latency charts over ``?range=`` (1h, 6h, 24h, 7d, 28d). A range
    that is not one of those shows the default (24 h) and says so: the page is for people, who
    would rather see a chart than an error for a mistyped URL."""
    from apps.core.conf import sotto
    from apps.slo.selectors import min_sample, slo_status_for_tenant

    status = slo_status_for_tenant(tenant_id=access.tenant.id)
    rows = [
        {
            "cls": cls,
            "state": state,
            "percentile": objective_percentile(state.objective.latency_target),
            "day": state.windows.get("24h"),
        }
        for cls, state in status.classes.items()
    ]
    asked = request.GET.get("range")
    time_range = sources.slo_range(asked)
    if time_range is None:
        time_range = sources.SLO_RANGES[sources.DEFAULT_SLO_RANGE]
        messages.warning(request, f"There is no time range {(asked or '')[:20]!r}; showing {time_range.key}.")
    charts = slo_charts(
        latency=sources.latency_series_for_range(tenant_id=access.tenant.id, time_range=time_range),
        time_range=time_range,
    )
    return tenant_render(
        request,
        access,
        "webadmin/tenant/slo.html",
        {
            "rows": rows,
            "alerts": status.open_alerts,
            "charts": charts,
            "range": time_range.key,
            "ranges": list(sources.SLO_RANGES),
            "min_sample": min_sample(),
            "small_max": sotto().slo_ingest_small_max,
        },
        section="slo",
    )


@tenant_page("slo")
def objective_series(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    """What a range button on the objectives page loads: the latency charts over ``?range=``, as
    JSON. An unknown range is the caller's mistake: 400 naming the ranges there are."""
    time_range = sources.slo_range(request.GET.get("range"))
    if time_range is None:
        return JsonResponse(
            {"error": {"code": "invalid", "message": f"range must be one of {list(sources.SLO_RANGES)}"}},
            status=400,
        )
    return JsonResponse(
        slo_charts(
            latency=sources.latency_series_for_range(tenant_id=access.tenant.id, time_range=time_range),
            time_range=time_range,
        )
    )


@tenant_page("slo")
@require_http_methods(["GET", "POST"])
def objective_edit(request: HttpRequest, access: TenantAccess, endpoint_class: str) -> HttpResponseBase:
    from apps.slo.endpoints import CLASSES
    from apps.slo.selectors import slo_objectives_for_tenant
    from apps.slo.services import slo_objective_set

    if endpoint_class not in CLASSES:
        raise Http404
    current = slo_objectives_for_tenant(tenant_id=access.tenant.id)[endpoint_class]
    initial = {
        "latency_threshold_ms": current.latency_threshold_ms,
        "latency_target": current.latency_target,
        "availability_target": current.availability_target,
    }
    form = ObjectiveForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            slo_objective_set(
                tenant_id=access.tenant.id,
                endpoint_class=endpoint_class,
                actor=actor_of(request),
                **form.cleaned_data,
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Objective for {endpoint_class} saved.")
            return redirect("webadmin:slo", slug=access.tenant.slug)
    return tenant_render(
        request,
        access,
        "webadmin/tenant/slo_edit.html",
        {"form": form, "endpoint_class": endpoint_class, "current": current},
        section="slo",
    )


@tenant_page("slo")
@require_POST
def objective_reset(request: HttpRequest, access: TenantAccess, endpoint_class: str) -> HttpResponseBase:
    from apps.slo.endpoints import CLASSES
    from apps.slo.services import slo_objective_reset

    if endpoint_class not in CLASSES:
        raise Http404
    slo_objective_reset(tenant_id=access.tenant.id, endpoint_class=endpoint_class, actor=actor_of(request))
    messages.success(request, f"Objective for {endpoint_class} is back to the platform default.")
    return redirect("webadmin:slo", slug=access.tenant.slug)
