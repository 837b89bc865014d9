"""Service-level objectives per endpoint class: current status, edit, reset to the default."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods, require_POST

from apps.core.errors import DomainError
from apps.webadmin.forms import ObjectiveForm
from apps.webadmin.scoping import TenantAccess, tenant_page
from apps.webadmin.sources import objective_percentile
from apps.webadmin.views.common import actor_of, tenant_render


@tenant_page("slo")
def objectives(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    from apps.slo.selectors import slo_status_for_tenant

    status = slo_status_for_tenant(tenant_id=access.tenant.id)
    rows = [
        {"cls": cls, "state": state, "percentile": objective_percentile(state.objective.latency_target),
         "day": state.windows.get("24h")}
        for cls, state in status.classes.items()
    ]
    return tenant_render(
        request, access, "webadmin/tenant/slo.html", {"rows": rows, "alerts": status.open_alerts}, section="slo"
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
        "latency_threshold_ms": current.latency_threshold_ms, "latency_target": current.latency_target,
        "availability_target": current.availability_target,
    }
    form = ObjectiveForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            slo_objective_set(tenant_id=access.tenant.id, endpoint_class=endpoint_class, actor=actor_of(request), **form.cleaned_data)
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Objective for {endpoint_class} saved.")
            return redirect("webadmin:slo", slug=access.tenant.slug)
    return tenant_render(
        request, access, "webadmin/tenant/slo_edit.html",
        {"form": form, "endpoint_class": endpoint_class, "current": current}, section="slo",
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
