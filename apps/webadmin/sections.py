"""The tenant sidebar: each section, who may open it, and which backend module it waits for.

A section whose backend app has not shipped its module yet is neither linked nor routable (404).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from apps.core.modules import module_exists
from apps.tenancy.models import Role

ADMINS = frozenset({Role.OWNER.value, Role.ADMIN.value})
REVIEWERS = frozenset({Role.OWNER.value, Role.REVIEWER.value})
MEMBERS = frozenset(Role.values)


@dataclass(frozen=True)
class Section:
    key: str
    label: str
    url_name: str
    roles: frozenset[str]
    requires: str | None = None

    @property
    def available(self) -> bool:
        return self.requires is None or module_exists(self.requires)


SECTIONS: dict[str, Section] = {
    s.key: s
    for s in (
        Section("dashboard", "Dashboard", "webadmin:dashboard", MEMBERS),
        Section("catalog", "Catalogue", "webadmin:catalog", ADMINS, "apps.catalog.selectors"),
        Section("keys", "API keys", "webadmin:keys", ADMINS),
        Section("slo", "Objectives", "webadmin:slo", ADMINS, "apps.slo.services"),
        Section("privacy", "Privacy & training", "webadmin:privacy", ADMINS, "apps.modeling.services"),
        Section("users", "End users", "webadmin:users", ADMINS, "apps.profiles.services"),
        Section("audit", "Audit", "webadmin:audit", REVIEWERS, "apps.audit.services"),
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
