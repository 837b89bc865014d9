"""Error pages: a readable CSRF failure page (the admin's forms all carry a token; this is what a
stale tab sees), and the site's 404, chosen by path: JSON under the API, HTML in the admin's layout
everywhere else."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.webadmin.scoping import access_for, not_found

# Paths whose clients read JSON: an unknown one answers the API's error shape, never an HTML page.
JSON_PREFIXES = ("/api/", "/health/")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return render(request, "webadmin/csrf_failure.html", {"reason": reason}, status=403)


def wants_json(path: str) -> bool:
    """True for the API's paths (``/api/…``, ``/health/…``), whose 404 must stay JSON.

    >>> wants_json("/api/v1/nope"), wants_json("/api"), wants_json("/t/acme/nope/"), wants_json("/apiary/")
    (True, True, False, False)
    """
    return any(path == prefix.rstrip("/") or path.startswith(prefix) for prefix in JSON_PREFIXES)


def tenant_slug_of(path: str) -> str | None:
    """The slug of a ``/t/<slug>/…`` path, else None.

    >>> tenant_slug_of("/t/acme/nope/"), tenant_slug_of("/t/acme"), tenant_slug_of("/nope/")
    ('acme', 'acme', None)
    """
    parts = path.split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "t" and parts[2] else None


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: the API's JSON 404 under ``/api/``; elsewhere the admin's page, inside the
    tenant's layout for a member of the tenant in the path (anyone else, signed in or not, gets
    the same bare page for a tenant that exists and one that does not)."""
    if wants_json(request.path):
        from apps.api.errors import json_404

        return json_404(request, exception)
    slug = tenant_slug_of(request.path)
    user = getattr(request, "user", None)
    access = access_for(user, slug) if slug and user is not None else None
    return not_found(request, access)
