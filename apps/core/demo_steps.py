"""The demo's data steps, filled in as each app lands (catalogue import, encoding, training, evaluation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apps.tenancy.models import Tenant


def run_extra_steps(*, tenant: Tenant, step: Callable[[str], None], stdout: Any) -> None:
    """Load data and train; each app contributes its step here in order."""
    from django.conf import settings
    from django.core.management import call_command

    step("Catalogue: MovieLens ml-latest-small (9,742 movies, 100,836 ratings); BERT encoding takes minutes on 2 cores")
    call_command("import_movielens", str(settings.BASE_DIR / "data" / "ml-latest-small"), "--tenant", tenant.slug,
                 "--wait", stdout=stdout)


def curl_examples(*, base: str, key: str) -> list[str]:
    auth = f'-H "Authorization: Bearer {key}"'
    return [
        f"curl -s {base}/api/v1/catalog/status {auth}",
        f"curl -s {base}/api/v1/items/1 {auth}   # Toy Story (1995)",
        f"curl -s '{base}/api/v1/items/1/similar?k=5' {auth}",
    ]
