"""API keys of one tenant: list, create (the secret is shown once, never stored), revoke."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponseBase, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_http_methods

from apps.tenancy.selectors import api_keys_for_tenant
from apps.tenancy.services import TenancyError, api_key_create, api_key_revoke
from apps.webadmin.forms import ApiKeyCreateForm
from apps.webadmin.scoping import TenantAccess, tenant_page
from apps.webadmin.views.common import actor_of, tenant_render


@tenant_page("keys")
@require_http_methods(["GET", "POST"])
def keys(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    form = ApiKeyCreateForm(request.POST or None)
    issued = None
    if request.method == "POST" and form.is_valid():
        try:
            issued = api_key_create(
                tenant=access.tenant,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                actor=actor_of(request),
            )
        except TenancyError as exc:
            form.add_error(None, str(exc))
        else:
            form = ApiKeyCreateForm()
    rows = list(api_keys_for_tenant(tenant_id=access.tenant.id))
    return tenant_render(
        request,
        access,
        "webadmin/tenant/keys.html",
        {"form": form, "keys": rows, "issued": issued},
        section="keys",
        no_store=issued is not None,
    )


@tenant_page("keys")
def key_revoke(request: HttpRequest, access: TenantAccess, key_id: int) -> HttpResponseBase:
    # Another tenant's key id is 404 whatever the method, so look it up before refusing a GET.
    get_object_or_404(api_keys_for_tenant(tenant_id=access.tenant.id), pk=key_id)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    key = api_key_revoke(tenant=access.tenant, key_id=key_id, actor=actor_of(request))
    messages.success(request, f"Key {key.name} ({key.prefix}) is revoked; clients using it now get 401.")
    return redirect("webadmin:keys", slug=access.tenant.slug)
