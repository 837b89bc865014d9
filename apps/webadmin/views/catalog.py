"""The catalogue browser: search by title, filter by encoding state, encoding progress."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase

from apps.webadmin import sources
from apps.webadmin.forms import CatalogSearchForm
from apps.webadmin.scoping import TenantAccess, tenant_page
from apps.webadmin.views.common import tenant_render


@tenant_page("catalog")
def catalog(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    form = CatalogSearchForm(request.GET or None)
    q, status = "", ""
    if form.is_valid():
        q, status = form.cleaned_data["q"].strip(), form.cleaned_data["status"]
    after = request.GET.get("after", "")
    page = sources.catalog_items(
        tenant_id=access.tenant.id, q=q, status=status, after_pk=int(after) if after.isdigit() else None
    )
    context = {
        "form": form, "page": page, "q": q, "status": status,
        "progress": sources.encoding_progress(tenant_id=access.tenant.id),
    }
    return tenant_render(request, access, "webadmin/tenant/catalog.html", context, section="catalog")
