"""Each role's main job, end to end in the browser against the real stack."""

import re

import pytest
from django.conf import settings
from playwright.sync_api import Page, expect

from accounts import directory
from accounts.models import SenderSuspension
from aliases.models import Alias, Domain
from handover.models import HandoverNote
from outofoffice.models import VacationReply
from tests.conftest import DEMO_PASSWORD

pytestmark = pytest.mark.browser

NEW_PASSWORD = "Another long pass phrase 9"


@pytest.fixture
def alias_domain(db) -> Domain:
    domain, _ = Domain.objects.get_or_create(name=settings.ALIAS_DOMAIN, defaults={"is_alias_domain": True})
    return domain


def _nav(page: Page):
    return page.get_by_role("navigation", name="Main")


def test_end_user_makes_an_alias_from_a_url_switches_it_off_and_prepares_an_absence(
    page: Page, sign_in_as, make_directory_user, alias_domain
) -> None:
    colleague = make_directory_user(uid="colleague" + make_directory_user().uid[1:])
    user = sign_in_as("end user")

    # A per-site address from a pasted URL, in one step, then copied.
    _nav(page).get_by_role("link", name="Aliases").click()
    expect(page.locator(".empty")).to_contain_text("no aliases yet")
    page.get_by_label("Site").fill("https://www.shop.example.com/account/signup?ref=mail")
    page.get_by_role("button", name="Create address").click()
    alias = Alias.objects.get(owner__username=user.uid)
    assert alias.site and "shop.example" in alias.site
    expect(page.get_by_role("status")).to_contain_text(alias.address)
    page.get_by_role("button", name="Copy address").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == alias.address

    page.get_by_role("button", name="Switch off").click()
    expect(page.get_by_role("status")).to_contain_text("switched off")
    alias.refresh_from_db()
    assert not alias.enabled

    # A vacation reply.
    _nav(page).get_by_role("link", name="Vacation", exact=True).click()
    page.get_by_label("Send vacation replies").check()
    page.get_by_label("Subject").fill("Away until Monday")
    page.get_by_label("Reply text", exact=True).fill("I am away and read mail on Monday.")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_be_visible()
    vacation = VacationReply.objects.get(uid=user.uid)
    assert vacation.enabled and vacation.subject == "Away until Monday"

    # A handover note naming a colleague.
    _nav(page).get_by_role("link", name="Handover").click()
    page.get_by_role("link", name=re.compile("Write")).first.click()
    page.get_by_label("Away from").fill("2030-07-01T09:00")
    page.get_by_label("Back on").fill("2030-07-15T09:00")
    page.get_by_label("Primary delegate").fill(colleague.uid)
    page.get_by_role("button", name="Save the note").click()
    expect(page.get_by_role("status")).to_be_visible()

    assert HandoverNote.objects.get(author__username=user.uid).primary_delegate_uid == colleague.uid

    # The overview now says what is set.
    _nav(page).get_by_role("link", name="Overview").click()
    expect(page.locator("#tile-aliases").locator("..")).to_contain_text("0 active of 1")
    expect(page.locator("#tile-vacation").locator("..")).to_contain_text("on")

    # And the password.
    _nav(page).get_by_role("link", name="Password").click()
    page.get_by_label("Current password").fill(DEMO_PASSWORD)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status")).to_contain_text("Your password is changed")
    assert page.console_problems == []


def test_helpdesk_sets_and_clears_another_users_vacation(page: Page, sign_in_as, make_directory_user) -> None:
    away = make_directory_user()
    sign_in_as("helpdesk")
    _nav(page).get_by_role("link", name="Vacations").click()
    page.get_by_label("Find a user").fill(away.uid)
    page.get_by_role("button", name="Search").click()
    page.get_by_role("row", name=re.compile(away.uid)).get_by_role("link", name="Open").click()

    page.get_by_label("Send vacation replies").check()
    page.get_by_label("Subject").fill("Out sick")
    page.get_by_label("Reply text", exact=True).fill("I am out sick; the team reads my mail.")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_be_visible()
    assert VacationReply.objects.get(uid=away.uid).enabled

    _nav(page).get_by_role("link", name="Vacations").click()
    expect(page.get_by_role("link", name=away.uid)).to_be_visible()
    page.get_by_role("link", name=away.uid).click()
    page.get_by_role("button", name=re.compile("Clear")).click()
    page.get_by_role("button", name="Yes, clear it").click()  # the confirmation page
    expect(page.get_by_role("status")).to_be_visible()
    cleared = VacationReply.objects.filter(uid=away.uid).first()
    assert cleared is None or not cleared.enabled
    assert page.console_problems == []


def test_admin_suspends_and_reinstates_a_sender_and_sees_the_audit_trail(
    page: Page, sign_in_as, make_directory_user
) -> None:
    spammer = make_directory_user()
    admin = sign_in_as("admin")
    _nav(page).get_by_role("link", name="Users").click()
    page.get_by_label("Name, uid or address").fill(spammer.uid)
    page.get_by_role("button", name=re.compile("Search|Find")).click()
    page.get_by_role("link", name=re.compile(spammer.uid)).first.click()

    page.get_by_role("link", name="Suspend sender").click()
    page.get_by_label("Reason").fill("Sent 4000 spam messages from a phished password")
    page.get_by_role("button", name="Suspend").click()
    expect(page.locator(".badge-danger").first).to_contain_text("suspended")
    assert SenderSuspension.objects.active().filter(uid=spammer.uid).exists()
    assert directory.get_user(spammer.uid).sender_blocked

    page.get_by_role("button", name="Reinstate sender").click()
    expect(page.locator(".lead .badge").first).to_contain_text("may send")
    assert not SenderSuspension.objects.active().filter(uid=spammer.uid).exists()
    assert not directory.get_user(spammer.uid).sender_blocked

    _nav(page).get_by_role("link", name="Audit log").click()
    expect(_nav(page).get_by_role("link", name="Audit log")).to_have_attribute("aria-current", "page")
    page.get_by_label("Target").fill(spammer.uid)
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Reinstated a sender")
    expect(rows.nth(1)).to_contain_text("Suspended a sender")
    expect(rows.nth(0)).to_contain_text(admin.uid)

    # Clicking the actor narrows the log to what this admin did.
    rows.nth(0).get_by_role("link", name=admin.uid).click()
    expect(page.get_by_label("Actor")).to_have_value(admin.uid)
    assert page.console_problems == []
