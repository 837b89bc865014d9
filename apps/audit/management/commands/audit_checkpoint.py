"""``audit_checkpoint``: sign every chain's head now (what the hourly beat task does)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand

from apps.audit.services import audit_checkpoint_all


class Command(BaseCommand):
    help = "Sign a checkpoint for every audit chain whose head moved since its last checkpoint."

    def handle(self, *args: Any, **options: Any) -> None:
        counts = audit_checkpoint_all()
        self.stdout.write(json.dumps(counts, sort_keys=True))
        if counts["broken"]:
            raise SystemExit(1)
