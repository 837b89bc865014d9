"""A readable CSRF failure page (the admin's forms all carry a token; this is what a stale tab sees)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return render(request, "webadmin/csrf_failure.html", {"reason": reason}, status=403)
