"""End users, by pseudonym only; decrypted data only through the explicit, audited access export."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase
from django.views.decorators.http import require_POST

from apps.core.errors import NotFound
from apps.webadmin import sources
from apps.webadmin.forms import AccessExportForm
from apps.webadmin.scoping import TenantAccess, tenant_page
from apps.webadmin.views.common import actor_of, tenant_render


@tenant_page("users")
def users(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    after = request.GET.get("after", "")
    page = sources.end_users_page(tenant_id=access.tenant.id, after_pk=int(after) if after.isdigit() else None)
    return tenant_render(
        request, access, "webadmin/tenant/users.html", {"page": page, "form": AccessExportForm()}, section="users"
    )


@tenant_page("users")
@require_POST
def user_export(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    """Decrypt and show everything held about one person; ``profiles.user_export`` audits it."""
    from apps.profiles.services import user_export as export_service

    form = AccessExportForm(request.POST)
    if form.is_valid():
        try:
            export = export_service(
                tenant_id=access.tenant.id, user_ref=form.cleaned_data["user_ref"], actor=actor_of(request)
            )
        except NotFound:
            form.add_error("user_ref", "No data is held about this user id (never seen, or erased).")
        else:
            return tenant_render(
                request, access, "webadmin/tenant/user_export.html", {"export": export}, section="users", no_store=True
            )
    page = sources.end_users_page(tenant_id=access.tenant.id, after_pk=None)
    return tenant_render(
        request, access, "webadmin/tenant/users.html", {"page": page, "form": form}, section="users", status=400
    )
