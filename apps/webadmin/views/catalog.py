"""The catalogue browser: search by title or by meaning, filter by encoding state, encoding progress."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase

from apps.core.errors import DomainError
from apps.webadmin import sources
from apps.webadmin.forms import CatalogSearchForm
from apps.webadmin.scoping import TenantAccess, tenant_page
from apps.webadmin.views.common import tenant_render


@tenant_page("catalog")
def catalog(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    form = CatalogSearchForm(request.GET or None)
    q, status, mode = "", "", CatalogSearchForm.TITLE
    if form.is_valid():
        q, status = form.cleaned_data["q"].strip(), form.cleaned_data["status"]
        mode = form.cleaned_data["mode"] or CatalogSearchForm.TITLE
    page, matches = None, None
    if mode == CatalogSearchForm.MEANING and q:
        try:
            matches = sources.catalog_by_meaning(tenant_id=access.tenant.id, q=q, status=status)
        except DomainError as exc:
            form.add_error("q", exc.message)
    if matches is None:
        after = request.GET.get("after", "")
        page = sources.catalog_items(
            tenant_id=access.tenant.id,
            q=q if mode == CatalogSearchForm.TITLE else "",
            status=status,
            after_pk=int(after) if after.isdigit() else None,
        )
    context = {
        "form": form,
        "page": page,
        "matches": matches,
        "q": q,
        "status": status,
        "mode": mode,
        "progress": sources.encoding_progress(tenant_id=access.tenant.id),
    }
    return tenant_render(request, access, "webadmin/tenant/catalog.html", context, section="catalog")
