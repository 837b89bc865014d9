"""The tenant sidebar: each section and who may open it (every backend app is always installed)."""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

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


SECTIONS: dict[str, Section] = {
    s.key: s
    for s in (
        Section("dashboard", "Dashboard", "webadmin:dashboard", MEMBERS),
        Section("catalog", "Catalogue", "webadmin:catalog", ADMINS),
        Section("keys", "API keys", "webadmin:keys", ADMINS),
        Section("slo", "Objectives", "webadmin:slo", ADMINS),
        Section("privacy", "Privacy & training", "webadmin:privacy", ADMINS),
        Section("model", "Models & settings", "webadmin:models", ADMINS),
        Section("users", "End users", "webadmin:users", ADMINS),
        Section("audit", "Audit", "webadmin:audit", REVIEWERS),
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
        if role in s.roles
    ]
