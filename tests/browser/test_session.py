"""Signing in and out, the password, navigation per role, time zone, layout on a phone."""

import re

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from accounts import directory
from aliases.models import Alias, Domain
from tests.browser.conftest import PHONE, TIME_ZONE
from tests.conftest import DEMO_PASSWORD

pytestmark = pytest.mark.browser

NEW_PASSWORD = "Quite another pass phrase 7"


def _nav(page: Page):
    return page.get_by_role("navigation", name="Main")


def _nav_links(page: Page) -> list[str]:
    return _nav(page).get_by_role("link").all_inner_texts()


def test_user_signs_in_changes_password_and_signs_out(page: Page, make_directory_user) -> None:
    user = make_directory_user()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/sign-in/"))
    page.get_by_label("User name").fill(user.uid)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match")

    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Hello")

    _nav(page).get_by_role("link", name="Password").click()
    expect(_nav(page).get_by_role("link", name="Password")).to_have_attribute("aria-current", "page")
    page.get_by_label("Current password").fill(DEMO_PASSWORD)
    page.get_by_label("New password", exact=True).fill("short")
    page.get_by_label("New password again").fill("short")
    page.get_by_role("button", name="Change password").click()
    # The error sits next to the field it is about.
    expect(page.locator(".field-error").filter(has=page.get_by_label("New password", exact=True))).to_contain_text(
        "too short"
    )

    page.get_by_label("Current password").fill(DEMO_PASSWORD)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password is changed")
    assert directory.password_hash(user.uid).startswith("{CRAM-MD5}")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("signed out")
    page.get_by_label("User name").fill(user.uid)
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Hello")


@pytest.mark.parametrize(
    ("role", "present", "absent"),
    [
        ("end user", ["Overview", "Aliases", "Vacation", "Password"], ["Users", "Audit log", "Domains"]),
        ("helpdesk", ["Aliases", "Users", "Vacations"], ["Audit log", "Domains"]),
        ("admin", ["Aliases", "Users", "Vacations", "Domains", "Audit log"], []),
    ],
)
def test_navigation_shows_only_what_the_role_may_do(page: Page, sign_in_as, role, present, absent) -> None:
    sign_in_as(role)
    links = _nav_links(page)
    for label in present:
        assert label in links
    for label in absent:
        assert label not in links
    expect(_nav(page).get_by_role("link", name="Overview")).to_have_attribute("aria-current", "page")
    assert page.locator("[aria-current]").count() == 1
    assert page.console_problems == []


def test_keyboard_user_can_skip_to_content_and_sees_focus(page: Page, sign_in_as) -> None:
    sign_in_as("end user")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"


def test_dates_are_shown_in_the_browsers_time_zone(page: Page, sign_in_as) -> None:
    sign_in_as("admin")
    # The first page stored the zone in a cookie; every page from then on uses it. (The audit
    # log leaves sign-ins out unless asked; the sign-in is the one event here.)
    page.goto("/audit/?sign_ins=on")
    expect(page.locator(".site-footer")).to_contain_text(TIME_ZONE)
    stamp = page.locator("table time").first
    iso = stamp.get_attribute("datetime")
    assert iso is not None and iso.endswith(("+01:00", "+02:00"))


def test_pages_fit_a_phone_screen(page: Page, sign_in_as) -> None:
    page.set_viewport_size(PHONE)
    sign_in_as("admin")
    for path in ("/", "/audit/", "/accounts/password/"):
        page.goto(path)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px on a phone"
    assert page.console_problems == []


def test_pages_carry_no_inline_script_or_style(page: Page, sign_in_as) -> None:
    sign_in_as("admin")
    for path in ("/", "/audit/", "/accounts/password/", "/aliases/", "/out-of-office/vacation/"):
        page.goto(path)
        inline = page.evaluate(
            "[...document.querySelectorAll('script:not([src]), style, [style]')].map(e => e.outerHTML.slice(0, 80))"
        )
        assert inline == [], f"{path}: {inline}"
    assert page.console_problems == [], "the Content Security Policy blocked something"
    assert settings.STATIC_URL


def test_a_form_marked_data_confirm_asks_first_and_nothing_happens_on_cancel(page: Page, sign_in_as) -> None:
    user = sign_in_as("end user")
    domain, _ = Domain.objects.get_or_create(name=settings.ALIAS_DOMAIN, defaults={"is_alias_domain": True})
    alias = Alias.objects.create(owner=User.objects.get(username=user.uid), local_part="confirmme", domain=domain)
    page.goto(f"/aliases/{alias.pk}/")
    switch_off = page.locator("form").filter(has=page.get_by_role("button", name="Switch off"))
    # As a template would mark a destructive form:
    switch_off.evaluate("form => form.setAttribute('data-confirm', 'Switch confirmme off?')")

    page.answer_dialogs = False
    page.get_by_role("button", name="Switch off").click()
    assert page.dialogs == ["Switch confirmme off?"]
    alias.refresh_from_db()
    assert alias.enabled
    expect(page.get_by_role("button", name="Switch off")).to_be_visible()

    page.answer_dialogs = True
    page.get_by_role("button", name="Switch off").click()
    expect(page.get_by_role("status")).to_contain_text("switched off")
    alias.refresh_from_db()
    assert not alias.enabled


CONTRAST = """
(selectors) => {
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const out = {};
  for (const selector of selectors) {
    const el = document.querySelector(selector);
    if (!el) { out[selector] = null; continue; }
    const a = lum(rgb(getComputedStyle(el).color).slice(0, 3)), b = lum(background(el));
    out[selector] = Math.round(((Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)) * 10) / 10;
  }
  return out;
}
"""


def test_text_meets_wcag_aa_contrast(page: Page, sign_in_as) -> None:
    sign_in_as("admin")
    page.goto("/audit/?sign_ins=on")  # the sign-in is the one event: a table to measure
    selectors = [
        "body",
        ".lead",
        ".help",
        ".site-nav a",
        ".site-nav a[aria-current]",
        ".nav-group-label",
        ".who",
        ".who-role",
        ".site-footer",
        "th",
        ".badge",
        ".button",
        ".button-secondary",
        ".muted",
    ]
    ratios = page.evaluate(CONTRAST, selectors)
    low = {selector: ratio for selector, ratio in ratios.items() if ratio is not None and ratio < 4.5}
    assert low == {}
    assert sum(ratio is not None for ratio in ratios.values()) >= 12
