"""The tenant sidebar: each section, who may open it, and which backend contract it waits for.

A section whose backend app has not met its contract yet (``contracts.py``) is neither linked nor
routable (404).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from apps.tenancy.models import Role
from apps.webadmin import contracts

ADMINS = frozenset({Role.OWNER.value, Role.ADMIN.value})
REVIEWERS = frozenset({Role.OWNER.value, Role.REVIEWER.value})
MEMBERS = frozenset(Role.values)


@dataclass(frozen=True)
class Section:
    key: str
    label: str
    url_name: str
    roles: frozenset[str]
    requires: contracts.Contract | None = None

    @property
    def available(self) -> bool:
        return self.requires is None or self.requires.met()


SECTIONS: dict[str, Section] = {
    s.key: s
    for s in (
        Section("dashboard", "Dashboard", "webadmin:dashboard", MEMBERS),
        Section("catalog", "Catalogue", "webadmin:catalog", ADMINS, contracts.CATALOG),
        Section("keys", "API keys", "webadmin:keys", ADMINS),
        Section("slo", "Objectives", "webadmin:slo", ADMINS, contracts.SLO),
        Section("privacy", "Privacy & training", "webadmin:privacy", ADMINS, contracts.MODELING),
        Section("model", "Models & settings", "webadmin:models", ADMINS, contracts.MODELING),
        Section("users", "End users", "webadmin:users", ADMINS, contracts.PROFILES),
        Section("audit", "Audit", "webadmin:audit", REVIEWERS, contracts.AUDIT),
    )
}


@dataclass(frozen=True)
class NavLink:
    key: str
    label: str
    url: str
    active: bool


def nav_for(*, slug: str, role: str, current: str) -> list[NavLink]:
    return [
        NavLink(s.key, s.label, reverse(s.url_name, kwargs={"slug": slug}), s.key == current)
        for s in SECTIONS.values()
        if role in s.roles and s.available
    ]
