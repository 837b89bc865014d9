"""Privacy budget and DP training runs: start one with an ε, watch its progress."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods

from apps.core.errors import DomainError
from apps.modeling import services as modeling_services
from apps.webadmin import sources
from apps.webadmin.charts import privacy_chart
from apps.webadmin.forms import TrainingRunForm
from apps.webadmin.scoping import TenantAccess, tenant_page
from apps.webadmin.views.common import actor_of, tenant_render


@tenant_page("privacy")
@require_http_methods(["GET", "POST"])
def privacy(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    tenant_id = access.tenant.id
    form = TrainingRunForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            run = modeling_services.training_run_start(
                tenant_id=tenant_id, epsilon=form.cleaned_data["epsilon"], actor=actor_of(request)
            )
        except DomainError as exc:
            form.add_error("epsilon", exc.message)
        else:
            started = sources._run(run)
            messages.success(request, f"Training run #{started.id} started with ε {started.epsilon:g}.")
            return redirect("webadmin:training-run", slug=access.tenant.slug, run_id=started.id)
    budget = sources.privacy_budget(tenant_id=tenant_id)
    context = {
        "form": form,
        "budget": budget,
        "runs": sources.training_runs(tenant_id=tenant_id) or [],
        "charts": {"privacy": privacy_chart(budget)} if budget is not None else {},
    }
    return tenant_render(request, access, "webadmin/tenant/privacy.html", context, section="privacy")


@tenant_page("privacy")
def training_run(request: HttpRequest, access: TenantAccess, run_id: int) -> HttpResponseBase:
    run = sources.training_run(tenant_id=access.tenant.id, run_id=run_id)
    return tenant_render(
        request, access, "webadmin/tenant/training_run.html", {"run": run}, section="privacy"
    )


@tenant_page("privacy")
def training_run_status(request: HttpRequest, access: TenantAccess, run_id: int) -> HttpResponseBase:
    """What the run page polls: status, progress (0..1), the stage it is in, whether it is finished."""
    run = sources.training_run(tenant_id=access.tenant.id, run_id=run_id)
    return JsonResponse(
        {
            "id": run.id,
            "status": run.status,
            "progress": run.progress,
            "stage": run.stage,
            "finished": run.finished,
            "message": run.error,
        }
    )
