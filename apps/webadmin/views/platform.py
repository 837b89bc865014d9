"""Platform operators (superusers): tenants, memberships, health. Everyone else gets 404 here."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.db import connection
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from apps.core import views as core_views
from apps.core.conf import sotto
from apps.core.models import WorkerHeartbeat
from apps.tenancy.selectors import all_memberships, tenant_get, tenants_for_user
from apps.tenancy.services import TenancyError, membership_remove, membership_set, tenant_create
from apps.webadmin.forms import MembershipForm, TenantCreateForm
from apps.webadmin.scoping import not_found, operator_page
from apps.webadmin.views.common import actor_of

WORKER_QUEUES = ("default", "encode", "train")
HEARTBEAT_FRESH = timedelta(minutes=5)


@operator_page
@require_http_methods(["GET", "POST"])
def tenants(request: HttpRequest) -> HttpResponseBase:
    form = TenantCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            tenant = tenant_create(
                slug=form.cleaned_data["slug"], name=form.cleaned_data["name"], actor=actor_of(request)
            )
        except TenancyError as exc:
            form.add_error("slug", str(exc))
        else:
            messages.success(request, f"Tenant {tenant.slug} created. Add its first owner below.")
            return redirect("webadmin:platform-memberships")
    rows = tenants_for_user(user=request.user)  # type: ignore[arg-type]
    return render(
        request, "webadmin/platform/tenants.html", {"form": form, "tenants": rows, "section": "tenants"}
    )


@operator_page
@require_http_methods(["GET", "POST"])
def memberships(request: HttpRequest) -> HttpResponseBase:
    slugs = [t.slug for t in tenants_for_user(user=request.user)]  # type: ignore[arg-type]
    form = MembershipForm(
        request.POST or None, tenant_slugs=slugs, initial={"tenant": request.GET.get("tenant")}
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        tenant = tenant_get(slug=data["tenant"])
        user_model = get_user_model()
        user = user_model.objects.filter(username=data["username"]).first()
        if tenant is None:
            form.add_error("tenant", "no such tenant")
        elif user is None and not data["password"]:
            form.add_error("password", "There is no such user yet: give a password to create the account.")
        else:
            if user is None:
                user = user_model.objects.create_user(username=data["username"], password=data["password"])
            try:
                membership_set(tenant=tenant, user=user, role=data["role"], actor=actor_of(request))
            except TenancyError as exc:
                form.add_error("role", str(exc))
            else:
                messages.success(request, f"{user.get_username()} is now {data['role']} of {tenant.slug}.")
                return redirect("webadmin:platform-memberships")
    only_tenant = request.GET.get("tenant") or ""
    rows = sorted(
        (m for m in all_memberships() if not only_tenant or m.tenant.slug == only_tenant),
        key=lambda m: (m.tenant.slug, m.user.get_username()),
    )
    return render(
        request,
        "webadmin/platform/memberships.html",
        {"form": form, "memberships": rows, "section": "memberships", "only_tenant": only_tenant},
    )


@operator_page
@require_POST
def membership_delete(request: HttpRequest, slug: str, user_id: int) -> HttpResponseBase:
    tenant = tenant_get(slug=slug)
    if tenant is None:
        return not_found(request)
    membership_remove(tenant=tenant, user_id=user_id, actor=actor_of(request))
    messages.success(request, f"Membership removed from {tenant.slug}.")
    return redirect("webadmin:platform-memberships")


@operator_page
def health(request: HttpRequest) -> HttpResponseBase:
    checks = json.loads(core_views.ready(request).content)["checks"]
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        row = cursor.fetchone()
    now = timezone.now()
    beats = [
        {
            "beat": beat,
            "age_s": int((now - beat.seen_at).total_seconds()),
            "fresh": now - beat.seen_at <= HEARTBEAT_FRESH,
        }
        for beat in WorkerHeartbeat.objects.order_by("queue")
    ]
    return render(
        request,
        "webadmin/platform/health.html",
        {
            "checks": checks,
            "server_version": row[0] if row else "?",
            "beats": beats,
            "section": "health",
            "fresh_minutes": int(HEARTBEAT_FRESH.total_seconds() // 60),
        },
    )


@operator_page
@require_POST
def health_ping(request: HttpRequest) -> HttpResponseBase:
    """Queue a ping on every worker queue; each worker that runs it refreshes its heartbeat row."""
    from apps.core.tasks import worker_ping

    prefix = sotto().queue_prefix
    token = uuid.uuid4().hex
    for queue in WORKER_QUEUES:
        worker_ping.apply_async(args=[f"{prefix}{queue}", token], queue=f"{prefix}{queue}")
    messages.info(request, "Pinged the default, encode and train queues; reload in a few seconds.")
    return redirect("webadmin:platform-health")
