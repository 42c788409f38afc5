"""Browser tests: Playwright (Python) driving Debian's chromium against the real
aipk server (``gateway_server``: daphne, websockets included) and the provider
simulator, both on loopback.

``console`` is a fresh browser context (no cookies) on that server, with helpers:
``console.sign_in(user)`` logs in through the login form, ``console.goto(path)``,
``console.shot(name)`` keeps a screenshot in test-artifacts/screenshots/. Any
JavaScript error on a page fails the test. ``console_user(username, ...)`` makes
a user who can sign in with ``PASSWORD``.

Chromium comes from Debian (scripts/ensure-chromium, run by `make test`);
Playwright's own browser download cannot work on machines without internet.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("AIPK_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORD = "correct horse battery staple"
# as root in a container, without a GPU, and with no reason to phone home: the
# machines have no internet, and chromium's background fetches only add noise
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """One chromium per test module (a launch costs about a second). Not longer:
    Playwright's sync API keeps an event loop running on this thread, which must
    be gone before the async tests in other folders run. (Package scope would not
    do: without __init__.py files pytest has no package here, and a "package"
    fixture lives for the whole session.)"""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: `make test` installs it (scripts/ensure-chromium); "
            "or set AIPK_CHROMIUM to a chromium binary"
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; Django would take
    # every ORM call the test makes for one from async code. It is not: the test
    # itself is synchronous (pytest-django's documented setting for Playwright).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            yield chromium
            chromium.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@dataclass
class Console:
    page: object  # playwright.sync_api.Page
    url: str
    test_name: str
    errors: list[str] = field(default_factory=list)
    shots: int = 0

    def goto(self, path: str):
        return self.page.goto(self.url + path)

    def sign_in(self, user, password: str = PASSWORD) -> None:
        self.goto("/console/login/")
        self.page.get_by_label("Username").fill(user.get_username())
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(re.compile(r".*/console/(?!login).*"))

    def shot(self, name: str) -> Path:
        """Keep a full-page screenshot as a test artifact."""
        self.shots += 1
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.test_name}-{self.shots:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def console(request, transactional_db, settings, gateway_server, simulator, browser):
    from tests.gateway.conftest import _clear_caches

    # a cheap hasher: signing in goes through the real form, without 1M PBKDF2 rounds
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    _clear_caches()
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15_000)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    running = Console(page=page, url=gateway_server.url, test_name=name)
    page.on("pageerror", lambda error: running.errors.append(str(error)))
    yield running
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        running.shot("failure")
    context.close()
    _clear_caches()
    assert not running.errors, f"JavaScript errors on the page: {running.errors}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # remember each phase's report on the test item, so ``console`` can take a
    # screenshot of a page a test failed on
    report = yield
    setattr(item, "rep_" + report.when, report)
    return report


@pytest.fixture
def console_user(transactional_db, settings) -> Callable:
    """console_user("ada", is_staff=True) → a user who signs in with PASSWORD."""
    from django.contrib.auth import get_user_model

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    def make(username: str, **extra):
        return get_user_model().objects.create_user(username, password=PASSWORD, **extra)

    return make
