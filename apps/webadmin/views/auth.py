"""Sign in (throttled, audited by ``throttle``), sign out (POST only), and the landing page."""

from __future__ import annotations

import math

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from apps.tenancy.selectors import memberships_for_user, tenants_for_user
from apps.webadmin.forms import SignInForm
from apps.webadmin.throttle import client_address, lock_remaining_s


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponseBase:
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = ""
    if request.user.is_authenticated:
        return redirect(next_url or "webadmin:home")
    form = SignInForm(request, data=request.POST if request.method == "POST" else None)
    locked_minutes = 0
    if request.method == "POST":
        if form.is_valid():
            auth_login(request, form.get_user())
            return redirect(next_url or settings.LOGIN_REDIRECT_URL)
        locked_s = lock_remaining_s(username=request.POST.get("username", ""), ip=client_address(request))
        locked_minutes = math.ceil(locked_s / 60) if locked_s else 0
    status = 429 if locked_minutes else 200
    return render(
        request,
        "webadmin/login.html",
        {"form": form, "next": next_url, "locked_minutes": locked_minutes},
        status=status,
    )


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    auth_logout(request)
    messages.info(request, "You have signed out.")
    return redirect("webadmin:login")


@login_required
def home(request: HttpRequest) -> HttpResponseBase:
    """Where sign-in lands: straight to the only tenant, else a picker (operators get the platform too)."""
    user = request.user
    is_operator = bool(getattr(user, "is_superuser", False))
    if is_operator:
        cards = [(t, "operator") for t in tenants_for_user(user=user)]  # type: ignore[arg-type]
    else:
        cards = [(m.tenant, m.role) for m in memberships_for_user(user=user)]  # type: ignore[arg-type]
        if len(cards) == 1:
            return redirect("webadmin:dashboard", slug=cards[0][0].slug)
    return render(request, "webadmin/home.html", {"cards": cards, "is_operator": is_operator})
