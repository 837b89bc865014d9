"""Model versions and the lifecycle settings: activate or roll back a version, the budget policy,
the retraining schedule (with its alert), the design and retention."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods, require_POST

from apps.core.errors import DomainError
from apps.webadmin.forms import ModelSettingsForm
from apps.webadmin.scoping import TenantAccess, tenant_page
from apps.webadmin.views.common import actor_of, tenant_render


def _initial(current: dict[str, Any]) -> dict[str, Any]:
    budget, schedule = current["privacy_budget"], current["retraining"]
    from apps.modeling.run_config import DESIGN_ALIASES

    design = current["model"]["dp_design"]
    return {
        "dp_design": DESIGN_ALIASES.get(design, design),
        "epsilon_total": budget["epsilon_total"],
        "delta": budget["delta"],
        "renewal_days": budget["renewal_days"],
        "cadence": schedule["cadence"],
        "epsilon_per_run": schedule["epsilon_per_run"],
        "min_new_events": schedule["min_new_events"],
        "event_retention_days": current["retention"]["event_retention_days"],
    }


@tenant_page("model")
@require_http_methods(["GET", "POST"])
def models(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    from apps.api.tenant_settings import tenant_settings_get, tenant_settings_update
    from apps.modeling.selectors import model_versions

    tenant_id = access.tenant.id
    current = tenant_settings_get(tenant_id=tenant_id)
    form = ModelSettingsForm(request.POST or None, initial=_initial(current))
    if request.method == "POST" and form.is_valid():
        try:
            tenant_settings_update(
                tenant_id=tenant_id, changes=form.changes(_initial(current)), actor=actor_of(request)
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, "Settings saved.")
            return redirect("webadmin:models", slug=access.tenant.slug)
    versions = [
        {
            **v,
            "recall": v["metrics"].get("recall@20_capped"),
            "popularity": v["metrics"].get("dp_popularity_recall@20_capped"),
        }
        for v in model_versions(tenant_id=tenant_id)
    ]
    context = {
        "form": form,
        "settings": current,
        "versions": versions,
        "alert": current["retraining"]["alert"],
        "cap": current["privacy_budget"]["operator_cap"],
    }
    return tenant_render(request, access, "webadmin/tenant/models.html", context, section="model")


@tenant_page("model")
@require_POST
def version_activate(request: HttpRequest, access: TenantAccess, version: int) -> HttpResponseBase:
    from apps.modeling.lifecycle import model_version_activate

    try:
        state, done = model_version_activate(
            tenant_id=access.tenant.id, version=version, actor=actor_of(request)
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        if done:
            messages.success(
                request,
                f"Version {state['version']} is now serving (v{state['previous_version']} "
                "is kept for rollback).",
            )
        else:
            messages.success(
                request,
                f"Version {version} is being re-materialised by a worker; it serves once "
                "its item vectors and index are built.",
            )
    return redirect("webadmin:models", slug=access.tenant.slug)
