"""Admin sign-ins reach the audit chains; passwords and typed usernames never do.

A successful sign-in is written to the chain of every tenant the person is a member of, so each
tenant's reviewers see who signed in to act for it. The platform chain records every sign-in
and failed attempt: when the web admin is installed its sign-in throttle writes those (with the
refusals it makes), otherwise the handlers here do. A failed attempt names an existing account
by id only; whatever was typed for an unknown account is not kept (it may be a password).
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model, user_logged_in, user_login_failed
from django.contrib.auth.base_user import AbstractBaseUser
from django.dispatch import receiver
from django.http import HttpRequest

from apps.audit.services import audit_record_login, audit_record_login_failed


def _platform_written_elsewhere() -> bool:
    return apps.is_installed("apps.webadmin")


def _via(request: HttpRequest | None) -> str:
    return "" if request is None else str(request.path)[:100]


@receiver(user_logged_in, dispatch_uid="audit.signals.logged_in")
def _on_logged_in(sender: Any, request: HttpRequest | None, user: AbstractBaseUser, **kwargs: Any) -> None:
    audit_record_login(user=user, via=_via(request), platform=not _platform_written_elsewhere())


@receiver(user_login_failed, dispatch_uid="audit.signals.login_failed")
def _on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    if _platform_written_elsewhere():
        return
    model = get_user_model()
    typed = credentials.get(model.USERNAME_FIELD) or credentials.get("username")
    user_id = None
    if isinstance(typed, str) and typed:
        user_id = (
            model._default_manager.filter(**{model.USERNAME_FIELD: typed})
            .values_list("pk", flat=True)
            .first()
        )
    audit_record_login_failed(user_id=user_id, via=_via(request))
