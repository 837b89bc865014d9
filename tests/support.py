"""Helpers shared by tests: personas, unique tenants, polling."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def unique_slug(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class TenantPersona:
    tenant: Any
    key: str

    @property
    def slug(self) -> str:
        return str(self.tenant.slug)

    @property
    def auth(self) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.key}"}

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def make_tenant(prefix: str = "t", scopes: list[str] | None = None) -> TenantPersona:
    from apps.tenancy.services import api_key_create, tenant_create

    tenant = tenant_create(slug=unique_slug(prefix), name=f"Tenant {prefix}")
    issued = api_key_create(tenant=tenant, name="test", scopes=scopes)
    return TenantPersona(tenant=tenant, key=issued.raw)


def make_user(tenant: Any, role: str, password: str = "correct-horse-battery-9") -> Any:
    from django.contrib.auth import get_user_model

    from apps.tenancy.services import membership_set

    user = get_user_model().objects.create_user(username=unique_slug(role), password=password)
    membership_set(tenant=tenant, user=user, role=role, actor="test")
    return user


def wait_for(
    predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2, message: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(message or "condition not met in time")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for servers a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
