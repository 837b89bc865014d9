"""Sign-in hardening: throttling per (username, address), audit of sign-ins, CSRF, POST-only sign-out."""

from __future__ import annotations

from datetime import timedelta

from django.test import Client

from apps.core.tenant_db import dangerously_as_platform
from apps.webadmin.models import LoginFailure

PASSWORD = "correct-horse-battery-9"


def _post_login(client, username, password, **extra):
    return client.post("/login/", {"username": username, "password": password}, **extra)


def _signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_signing_in_lands_on_the_only_tenant_dashboard(admin_a, tenant_a):
    client = Client()
    response = _post_login(client, admin_a.username, PASSWORD)
    assert response.status_code == 302
    assert client.get(response["Location"])["Location"] == f"/t/{tenant_a.slug}/"
    assert _signed_in(client)


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(admin_a):
    client = Client()
    response = _post_login(client, admin_a.username, "not-the-password")
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert not _signed_in(client)


def test_repeated_failures_lock_that_username_from_that_address_with_a_clear_message(admin_a, settings):
    limit = settings.SOTTO["LOGIN_MAX_FAILURES"]
    client = Client(REMOTE_ADDR="203.0.113.7")
    statuses = [_post_login(client, admin_a.username, f"wrong-{i}").status_code for i in range(limit)]
    # the attempt that reaches the limit already answers 429 with the lock message
    assert statuses[:-1] == [200] * (limit - 1) and statuses[-1] == 429
    # then even the right password is refused, with the reason and how long to wait
    locked = _post_login(client, admin_a.username, PASSWORD)
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content and b"try again in 15 minutes" in locked.content
    assert not _signed_in(client)
    # while the same person from another address is not locked out
    elsewhere = Client(REMOTE_ADDR="198.51.100.9")
    assert _post_login(elsewhere, admin_a.username, PASSWORD).status_code == 302


def test_the_lock_ends_once_the_failures_leave_the_window(admin_a, settings):
    client = Client(REMOTE_ADDR="203.0.113.8")
    for i in range(settings.SOTTO["LOGIN_MAX_FAILURES"]):
        _post_login(client, admin_a.username, f"wrong-{i}")
    assert _post_login(client, admin_a.username, PASSWORD).status_code == 429
    # when the window has passed (the failures are older than it)
    window = timedelta(seconds=settings.SOTTO["LOGIN_WINDOW_S"] + 1)
    for failure in LoginFailure.objects.filter(ip="203.0.113.8"):
        LoginFailure.objects.filter(pk=failure.pk).update(at=failure.at - window)
    # then the right password works again, and a success clears the counter
    assert _post_login(client, admin_a.username, PASSWORD).status_code == 302
    assert not LoginFailure.objects.filter(ip="203.0.113.8").exists()


def test_django_admin_sign_in_is_throttled_too(operator, settings):
    client = Client(REMOTE_ADDR="203.0.113.9")
    for i in range(settings.SOTTO["LOGIN_MAX_FAILURES"]):
        client.post("/admin/login/", {"username": operator.username, "password": f"wrong-{i}"})
    client.post("/admin/login/", {"username": operator.username, "password": PASSWORD})
    assert not _signed_in(client)


def test_the_failure_counter_never_stores_what_was_typed(live_db):
    typed = "Password-Typed-As-Username-42"
    Client(REMOTE_ADDR="203.0.113.10").post("/login/", {"username": typed, "password": "x"})
    rows = list(LoginFailure.objects.filter(ip="203.0.113.10").values_list("username_digest", flat=True))
    assert len(rows) == 1
    assert typed.lower() not in rows[0] and typed not in rows[0] and len(rows[0]) == 64


def test_sign_ins_failures_and_lockouts_are_on_the_platform_audit_chain(admin_a, settings):
    from apps.audit.selectors import audit_events

    client = Client(REMOTE_ADDR="203.0.113.11")
    for i in range(settings.SOTTO["LOGIN_MAX_FAILURES"] + 1):
        _post_login(client, admin_a.username, f"wrong-{i}")
    Client(REMOTE_ADDR="203.0.113.12").post("/login/", {"username": admin_a.username, "password": PASSWORD})
    with dangerously_as_platform():
        rows = list(audit_events(None, target_id=str(admin_a.pk)).values_list("action", "actor", "details"))
    actions = [a for a, _, _ in rows]
    assert actions.count("auth.login_failed") == settings.SOTTO["LOGIN_MAX_FAILURES"]
    assert actions.count("auth.login_refused_locked") == 1
    assert actions.count("auth.login") == 1
    login = next(r for r in rows if r[0] == "auth.login")
    assert login[1] == f"user:{admin_a.username}" and login[2]["ip"] == "203.0.113.12"
    assert all("wrong-" not in str(r) for r in rows)


def test_sign_out_is_post_only(signed_in, admin_a):
    client = signed_in(admin_a)
    assert client.get("/logout/").status_code == 405
    assert _signed_in(client)
    response = client.post("/logout/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert not _signed_in(client)


def test_forms_refuse_posts_without_the_csrf_token(admin_a, tenant_a):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_a)
    response = client.post(f"/t/{tenant_a.slug}/keys/", {"name": "no-token", "scopes": ["serve"]})
    assert response.status_code == 403
    assert b"This form has expired" in response.content
    assert client.post("/logout/").status_code == 403
    assert (
        Client(enforce_csrf_checks=True).post("/login/", {"username": "x", "password": "y"}).status_code
        == 403
    )


def test_next_may_only_point_back_into_this_site(admin_a, tenant_a):
    client = Client()
    evil = _post_login(client, admin_a.username, PASSWORD, QUERY_STRING="next=https://evil.example/")
    assert evil["Location"] == "/"
    client = Client()
    response = client.post(
        f"/login/?next=/t/{tenant_a.slug}/keys/", {"username": admin_a.username, "password": PASSWORD}
    )
    assert response["Location"] == f"/t/{tenant_a.slug}/keys/"


def test_session_cookie_is_http_only_and_not_readable_by_scripts(admin_a):
    client = Client()
    _post_login(client, admin_a.username, PASSWORD)
    cookie = client.cookies["sessionid"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
