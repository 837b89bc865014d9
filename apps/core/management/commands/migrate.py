"""``migrate`` always runs as the owner role, then re-grants the runtime role's privileges."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import connections

from apps.core.roles import grant_runtime_privileges


class Command(DjangoMigrate):
    def handle(self, *args: Any, **options: Any) -> None:
        alias = options.get("database") or "default"
        connection = connections[alias]
        saved = {key: connection.settings_dict[key] for key in ("USER", "PASSWORD")}
        owner = settings.DATABASE_OWNER
        connection.close()
        connection.settings_dict.update({"USER": owner["USER"], "PASSWORD": owner["PASSWORD"]})
        try:
            super().handle(*args, **options)
            grant_runtime_privileges(connection, owner["USER"])
        finally:
            connection.close()
            connection.settings_dict.update(saved)
