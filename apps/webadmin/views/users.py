"""End users, by pseudonym only; decrypted data only through the explicit, audited access export
(shown, or downloaded as JSON), and what one user is recommended through the audited preview."""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.core.errors import DomainError, NotFound
from apps.webadmin import sources
from apps.webadmin.forms import AccessExportForm, RecommendationPreviewForm
from apps.webadmin.scoping import TenantAccess, tenant_page
from apps.webadmin.views.common import actor_of, tenant_render

PREVIEW_PREFIX = "preview"


def _users_page(
    request: HttpRequest,
    access: TenantAccess,
    *,
    form: AccessExportForm | None = None,
    preview_form: RecommendationPreviewForm | None = None,
    status: int = 200,
) -> HttpResponse:
    after = request.GET.get("after", "")
    page = sources.end_users_page(
        tenant_id=access.tenant.id, after_pk=int(after) if after.isdigit() else None
    )
    context = {
        "page": page,
        "form": form or AccessExportForm(),
        "preview_form": preview_form or RecommendationPreviewForm(prefix=PREVIEW_PREFIX),
    }
    return tenant_render(
        request, access, "webadmin/tenant/users.html", context, section="users", status=status
    )


@tenant_page("users")
def users(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    return _users_page(request, access)


def _export(
    request: HttpRequest, access: TenantAccess, form: AccessExportForm, **options: Any
) -> dict[str, Any] | None:
    """The access export through ``profiles.services.user_export`` (which decrypts and audits it,
    exactly as for ``GET /api/v1/users/{id}``); None with the form's errors set when refused."""
    from apps.profiles.services import user_export as export_service

    if not form.is_valid():
        return None
    try:
        export: dict[str, Any] = export_service(
            tenant_id=access.tenant.id,
            user_ref=form.cleaned_data["user_ref"],
            actor=actor_of(request),
            **options,
        )
    except NotFound:
        form.add_error("user_ref", "No data is held about this user id (never seen, or erased).")
        return None
    return export


@tenant_page("users")
@require_POST
def user_export(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    """Decrypt and show everything held about one person; ``profiles.user_export`` audits it."""
    form = AccessExportForm(request.POST)
    export = _export(request, access, form)
    if export is None:
        return _users_page(request, access, form=form, status=400)
    return tenant_render(
        request,
        access,
        "webadmin/tenant/user_export.html",
        {"export": export},
        section="users",
        no_store=True,
    )


@tenant_page("users")
@require_POST
def user_export_download(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    """The same export as a JSON file (the body ``GET /api/v1/users/{id}`` answers, with the largest
    page of events the API allows); audited by the service like every export."""
    from apps.profiles.services import MAX_EXPORT_EVENTS_PAGE

    form = AccessExportForm(request.POST)
    export = _export(request, access, form, events_limit=MAX_EXPORT_EVENTS_PAGE)
    if export is None:
        return _users_page(request, access, form=form, status=400)
    body = json.dumps(export, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2, sort_keys=True)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    # The file is named by tenant and pseudonym, never by the client's id (it stays in download lists).
    filename = f"access-export-{access.tenant.slug}-{export['pseudonym'][:16]}-{stamp}.json"
    response = HttpResponse(body.encode(), content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


@tenant_page("users")
@require_POST
def user_recommendations(request: HttpRequest, access: TenantAccess) -> HttpResponseBase:
    """The top 10 the API recommends to one end user now (same selector), audited by the serving service."""
    form = RecommendationPreviewForm(request.POST, prefix=PREVIEW_PREFIX)
    if form.is_valid():
        user_ref = form.cleaned_data["user_ref"]
        try:
            preview = sources.recommendation_preview(
                tenant_id=access.tenant.id, user_ref=user_ref, actor=actor_of(request)
            )
        except DomainError as exc:
            form.add_error("user_ref", exc.message)
        else:
            return tenant_render(
                request,
                access,
                "webadmin/tenant/user_recommendations.html",
                {"preview": preview, "user_ref": user_ref},
                section="users",
                no_store=True,
            )
    return _users_page(request, access, preview_form=form, status=400)
