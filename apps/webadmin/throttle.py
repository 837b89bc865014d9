"""Password sign-in throttling and sign-in audit, for the web admin and Django's admin alike.

After ``LOGIN_MAX_FAILURES`` failed attempts for one (username, client address) within
``LOGIN_WINDOW_S`` seconds, that pair is locked until the oldest of those failures leaves the
window; attempts during a lock are refused without checking the password and are not counted
(so a lock always ends). Counters live in the database, so every web process shares them, and
hold a keyed digest of the typed username, never the text (it may be a mistyped password).

Each sign-in, failure, refusal and sign-out is written to the platform audit chain (the audit
app's own handlers add sign-ins to each member tenant's chain). As there, a failed attempt names
an existing account by id only; what was typed for an unknown account is not kept.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model, user_logged_in, user_logged_out, user_login_failed
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import salted_hmac

from apps.core import audit
from apps.core.audit import AuditAction, SystemActor, user_actor
from apps.core.conf import sotto
from apps.webadmin.models import LoginFailure


def client_address(request: HttpRequest | None) -> str:
    """The peer address as the WSGI server saw it (put a proxy's real-IP handling in front of it)."""
    if request is None:
        return "unknown"
    return str(request.META.get("REMOTE_ADDR") or "unknown")[:64]


def _digest(username: str) -> str:
    return salted_hmac("sotto.webadmin.throttle", username.strip().lower(), algorithm="sha256").hexdigest()


def lock_remaining_s(*, username: str, ip: str) -> int:
    """Seconds until this (username, address) may try again; 0 when it is not locked."""
    limit = sotto().login_max_failures
    window = timedelta(seconds=sotto().login_window_s)
    now = timezone.now()
    recent = list(
        LoginFailure.objects.filter(username_digest=_digest(username), ip=ip, at__gte=now - window)
        .order_by("-at")
        .values_list("at", flat=True)[:limit]
    )
    if len(recent) < limit:
        return 0
    return max(1, math.ceil((recent[-1] + window - now).total_seconds()))


class ThrottledModelBackend(ModelBackend):
    """Django's model backend, refusing locked (username, address) pairs before any password check."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        if username and lock_remaining_s(username=username, ip=client_address(request)) > 0:
            raise PermissionDenied(
                "sign-in temporarily locked"
            )  # authenticate() stops and signals the failure
        return super().authenticate(request, username=username, password=password, **kwargs)


def _audit(action: AuditAction, *, actor: str, user_id: int | None, request: HttpRequest | None) -> None:
    via = "" if request is None else str(request.path)[:100]
    with transaction.atomic():
        audit.record(
            tenant_id=None,
            actor=actor,
            action=action,
            target_type="user" if user_id is not None else "",
            target_id="" if user_id is None else str(user_id),
            details={"via": via, "ip": client_address(request), "known_account": user_id is not None},
        )


def _existing_user_id(username: str) -> int | None:
    model = get_user_model()
    found = (
        model._default_manager.filter(**{model.USERNAME_FIELD: username}).values_list("pk", flat=True).first()
    )
    return int(found) if found is not None else None


def _on_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    username = str(credentials.get("username") or "")
    ip = client_address(request)
    user_id = _existing_user_id(username) if username else None
    if lock_remaining_s(username=username, ip=ip) > 0:
        _audit(
            AuditAction.AUTH_LOGIN_REFUSED_LOCKED,
            actor=SystemActor.ANONYMOUS,
            user_id=user_id,
            request=request,
        )
        return
    now = timezone.now()
    with transaction.atomic():
        LoginFailure.objects.filter(at__lt=now - timedelta(seconds=sotto().login_window_s)).delete()
        LoginFailure.objects.create(username_digest=_digest(username), ip=ip, at=now)
        _audit(AuditAction.AUTH_LOGIN_FAILED, actor=SystemActor.ANONYMOUS, user_id=user_id, request=request)


def _on_logged_in(sender: Any, request: HttpRequest | None, user: AbstractBaseUser, **kwargs: Any) -> None:
    with transaction.atomic():
        LoginFailure.objects.filter(
            username_digest=_digest(user.get_username()), ip=client_address(request)
        ).delete()
        _audit(
            AuditAction.AUTH_LOGIN,
            actor=user_actor(user.get_username()),
            user_id=int(user.pk),
            request=request,
        )


def _on_logged_out(
    sender: Any, request: HttpRequest | None, user: AbstractBaseUser | None, **kwargs: Any
) -> None:
    if user is not None:
        _audit(
            AuditAction.AUTH_LOGOUT,
            actor=user_actor(user.get_username()),
            user_id=int(user.pk),
            request=request,
        )


def connect_signals() -> None:
    user_login_failed.connect(_on_failed, dispatch_uid="webadmin.throttle.failed")
    user_logged_in.connect(_on_logged_in, dispatch_uid="webadmin.throttle.logged_in")
    user_logged_out.connect(_on_logged_out, dispatch_uid="webadmin.throttle.logged_out")
