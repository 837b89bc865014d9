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
            pytest.skip("Debian's chromium is not installed and we are not root to install it: run `sudo make browser`")
        pytest.fail("/usr/bin/chromium is missing although we run as root: `make browser` should have installed it")
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


@pytest.fixture
def modeling(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The modeling contract kept by an in-memory stand-in (``fake_modeling.py``), in this process,
    which is also the live server's process."""
    import sys

    from django.urls import get_resolver

    from apps.webadmin import contracts
    from tests.webadmin.fake_modeling import FakeModeling, fake_module

    # Load the URLconf first, as any running process has: the API's routes import the real app,
    # which must not find the stand-in (a test run alone would otherwise fail on that import).
    assert get_resolver().url_patterns
    fake = FakeModeling()
    monkeypatch.setitem(
        sys.modules, "apps.modeling.services", fake_module("apps.modeling.services", training_run_start=fake.training_run_start)
    )
    monkeypatch.setitem(sys.modules, "apps.modeling.selectors", fake_module(
        "apps.modeling.selectors", privacy_budget=fake.privacy_budget,
        training_runs_for_tenant=fake.training_runs_for_tenant, training_run_get=fake.training_run_get,
    ))
    assert contracts.MODELING.met()
    return fake
