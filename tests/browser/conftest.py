"""Playwright against Debian's Chromium (no browser download), one browser per session and a
fresh page per test. The app runs in pytest-django's live server thread against the real
slapd, Redis and Postfix that `python -m localservices test` started.

Every test leaves a screenshot in test-artifacts/screenshots/; a failing one also leaves
the page's screenshot and HTML in test-artifacts/failures/.
"""

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import Browser, Page, expect, sync_playwright

from mfa import totp
from tests.conftest import DEMO_PASSWORD, give_second_factor

# Playwright's sync API keeps an asyncio loop in this thread; Django would then refuse ORM
# calls from test code. The app itself runs in the live server's own thread.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("MAILADMIN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
TIME_ZONE = "Europe/Berlin"

expect.set_options(timeout=10_000)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _artifact_name(item: pytest.Item) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", item.name)[:150]


@pytest.fixture
def page(request: pytest.FixtureRequest, browser: Browser, live_server: object) -> Iterator[Page]:
    context = browser.new_context(base_url=str(live_server), viewport=DESKTOP, timezone_id=TIME_ZONE, locale="en-GB")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=str(live_server))
    page = context.new_page()
    problems: list[str] = []
    # CSP violations and script errors show up here; a finished page has none.
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.console_problems = problems  # type: ignore[attr-defined]
    # data-confirm asks with confirm(); answer yes and keep the question for the test to check.
    dialogs: list[str] = []
    page.answer_dialogs = True  # type: ignore[attr-defined]
    page.on(
        "dialog",
        lambda dialog: (
            dialogs.append(dialog.message),
            dialog.accept() if page.answer_dialogs else dialog.dismiss(),  # type: ignore[attr-defined]
        ),
    )
    page.dialogs = dialogs  # type: ignore[attr-defined]
    yield page
    name = _artifact_name(request.node)
    failed = any(
        getattr(request.node, f"report_{when}", None) is not None and getattr(request.node, f"report_{when}").failed
        for when in ("setup", "call")
    )
    try:
        if failed:
            (ARTIFACTS / "failures").mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "failures" / f"{name}.png"), full_page=True)
            (ARTIFACTS / "failures" / f"{name}.html").write_text(page.content())
        else:
            (ARTIFACTS / "screenshots").mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "screenshots" / f"{name}.png"), full_page=True)
    finally:
        context.close()


@pytest.fixture
def sign_in_as(page: Page, make_directory_user: Callable[..., object]) -> Callable[..., object]:
    """sign_in_as("helpdesk") creates a directory user of that role and signs in through the form."""

    def sign_in(role: str = "end user", **kwargs: object) -> object:
        user = make_directory_user(role=role, **kwargs)
        page.goto("/accounts/sign-in/")
        page.get_by_label("User name").fill(user.uid)  # type: ignore[attr-defined]
        page.get_by_label("Password").fill(str(kwargs.get("password", DEMO_PASSWORD)))
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()
        if "/second-factor/" in page.url:
            # The policy asks this role for a second factor: an authenticator app, set up here.
            secret = give_second_factor(user.uid)  # type: ignore[attr-defined]
            page.goto("/second-factor/verify/")
            page.get_by_label("Code").fill(totp.code_for(secret, totp.step_at()))
            page.get_by_role("button", name="Continue").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("Hello")
        return user

    return sign_in
