"""The compliance reviewer's audit browser: filtered events, live chain verification, signed
export bundles, the offline verifier and the public key to pin."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.core.errors import DomainError
from apps.webadmin import sources
from apps.webadmin.forms import AuditExportForm, AuditFilterForm
from apps.webadmin.scoping import TenantAccess, tenant_page
from apps.webadmin.views.common import actor_of, tenant_render

PAGE_SIZE = 50


def _attachment(data: bytes, filename: str, content_type: str) -> HttpResponse:
    response = HttpResponse(data, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


@tenant_page("audit")
def audit(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    return _audit_page(request, access, export_form=None)


def _audit_page(
    request: HttpRequest, access: TenantAccess, *, export_form: AuditExportForm | None
) -> HttpResponse:
    from apps.audit.selectors import audit_events, audit_public_key, audit_verifier_script_sha256
    from apps.audit.services import audit_verify_live

    filters = AuditFilterForm(request.GET or None)
    criteria: dict[str, object] = {}
    if filters.is_valid():
        since, until = filters.bounds()
        action = filters.cleaned_data["action"].strip()
        criteria = {
            "since": since,
            "until": until,
            "actor": filters.cleaned_data["actor"].strip() or None,
            "action_prefix" if action.endswith(".") else "action": action or None,
        }
    events = audit_events(access.tenant.id, **criteria)  # type: ignore[arg-type]
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "filters": filters,
        "page": page,
        "query": query.urlencode(),
        "rows": sources.audit_rows(page.object_list, sources.api_key_names(tenant_id=access.tenant.id)),
        "verification": audit_verify_live(access.tenant),
        "export_form": export_form or AuditExportForm(),
        "public_key": audit_public_key(),
        "verifier_sha256": audit_verifier_script_sha256(),
    }
    status = 400 if export_form is not None else 200
    return tenant_render(
        request, access, "webadmin/tenant/audit.html", context, section="audit", status=status
    )


@tenant_page("audit")
@require_POST
def audit_export(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    """A signed, offline-verifiable zip of the chosen days (the export itself is audited)."""
    from apps.audit.services import audit_export_bundle

    form = AuditExportForm(request.POST)
    if form.is_valid():
        since, until = form.bounds()
        try:
            data = audit_export_bundle(
                tenant=access.tenant, since=since, until=until, actor=actor_of(request)
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
            return _attachment(data, f"audit-{access.tenant.slug}-{stamp}.zip", "application/zip")
    return _audit_page(request, access, export_form=form)


@tenant_page("audit")
def audit_verifier(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    from apps.audit.selectors import VERIFIER_FILENAME, audit_verifier_script

    return _attachment(audit_verifier_script(), VERIFIER_FILENAME, "text/x-python")


@tenant_page("audit")
def audit_public_key_pem(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    from apps.audit.selectors import audit_public_key

    return _attachment(
        audit_public_key().public_key_pem.encode(), "sotto-audit-public-key.pem", "application/x-pem-file"
    )
