"""Web admin fixtures: signed-in test clients, a platform operator, a real HTTP server, Chromium.

Personas (who may touch what), on top of ``tests/conftest.py``:
- ``admin_a`` / ``admin_b``: admins of tenant A / B only (keys, catalogue, objectives, training, end users);
- ``reviewer_a``: compliance reviewer of A (dashboard and audit only, read-only);
- ``operator``: a platform operator (superuser): every tenant, plus /platform/.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import unique_slug

PASSWORD = "correct-horse-battery-9"
CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"


@pytest.fixture
def operator(live_db: None) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser(username=unique_slug("op"), password=PASSWORD, email="")


@pytest.fixture
def signed_in(live_db: None) -> Callable[[Any], Any]:
    """``signed_in(user)`` → a Django test client with that user's session (CSRF enforced)."""
    from django.test import Client

    def make(user: Any) -> Any:
        client = Client(enforce_csrf_checks=False)
        client.force_login(user)
        return client

    return make


# --- a real server and a real browser ---------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.geteuid() != 0:
            pytest.skip(
                "Debian's chromium is not installed and we are not root to install it: run `sudo make browser`"
            )
        pytest.fail(
            "/usr/bin/chromium is missing although we run as root: `make browser` should have installed it"
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API drives its own event loop; the ORM calls our tests make are still plain sync code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(chromium: Any, live_url: str) -> Iterator[Any]:
    context = chromium.new_context(base_url=live_url, viewport={"width": 1360, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.js_errors = errors
    try:
        yield tab
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Callable[[Any, str], Path]:
    """``shot(page, "keys")`` writes var/screenshots/<test>--keys.png and returns its path."""

    def take(tab: Any, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{request.node.name}--{name}.png"
        tab.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def sign_in() -> Callable[..., None]:
    """``sign_in(page, user)`` signs in through the real form."""

    def run(tab: Any, user: Any, password: str = PASSWORD) -> None:
        tab.goto("/login/")
        tab.fill("#id_username", user.get_username())
        tab.fill("#id_password", password)
        with tab.expect_navigation():
            tab.click("button[type=submit]")

    return run


class Runs:
    """Training runs of the real modeling app with the worker stood in for: ``training_run_start``
    charges the ledger and writes the run as always, the task it would queue is recorded in
    ``queued``, and a test moves a run through its states by writing its row as the worker does."""

    def __init__(self) -> None:
        self.queued: list[tuple[int, int]] = []

    def prepare(self, persona: Any, *, epsilon_total: float = 4.0) -> None:
        """A tenant that can train (items with vectors, 40 users' events) on a budget of ``epsilon_total``."""
        from apps.modeling.budget import privacy_budget_set
        from tests.modeling.support import seed_tenant

        seed_tenant(persona)
        privacy_budget_set(tenant=persona.tenant, actor="test", epsilon_total=epsilon_total)

    def start(self, persona: Any, epsilon: float) -> dict[str, Any]:
        from apps.modeling.services import training_run_start

        return training_run_start(tenant_id=persona.tenant.id, epsilon=epsilon, actor="test")

    def move(self, persona: Any, run_id: int, **fields: Any) -> None:
        """Set fields of the run row (``status``, ``stage``, ``epoch``, ``epochs``, ``metrics``...)."""
        from apps.core.tenant_db import tenant_context
        from apps.modeling.models import TrainingRun

        with tenant_context(persona.tenant.id):
            assert TrainingRun.objects.filter(tenant_id=persona.tenant.id, pk=run_id).update(**fields) == 1

    def succeed(self, persona: Any, run_id: int, metrics: dict[str, Any]) -> int:
        """Finish the run as the worker does: its model version (with these holdout metrics) stored,
        the run succeeded; returns the version number."""
        from django.db.models import Max
        from django.utils import timezone

        from apps.core.tenant_db import tenant_context
        from apps.modeling import progress
        from apps.modeling.models import ModelVersion, RunStatus, VersionStatus

        tenant_id = persona.tenant.id
        with tenant_context(tenant_id):
            newest = ModelVersion.objects.filter(tenant_id=tenant_id).aggregate(n=Max("version"))["n"] or 0
            version = ModelVersion.objects.create(
                tenant_id=tenant_id,
                version=newest + 1,
                run_id=run_id,
                status=VersionStatus.READY,
                blob=b"",
                checksum="",
                feature_config={},
                item_dim=0,
                n_items=0,
                metrics=metrics,
            )
        self.move(
            persona,
            run_id,
            status=RunStatus.SUCCEEDED,
            stage=progress.DONE,
            finished_at=timezone.now(),
            metrics=metrics,
            model_version=version,
        )
        return int(version.version)


@pytest.fixture
def runs(live_db: None, monkeypatch: pytest.MonkeyPatch) -> Runs:
    """``Runs`` in this process, which is also the live server's process (so its pages see them)."""
    recorder = Runs()
    monkeypatch.setattr(
        "apps.modeling.services._enqueue",
        lambda tenant_id, run_id: recorder.queued.append((tenant_id, run_id)),
    )
    return recorder
