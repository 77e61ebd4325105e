"""The staff console in the browser: helpdesk finds a person in the user list and sets their
vacation reply from their page, without leaving it."""

import pytest
from playwright.sync_api import Page, expect

from handover.models import HandoverNote
from outofoffice.models import VacationReply
from tests.browser.conftest import PHONE
from tests.conftest import DEMO_PASSWORD

pytestmark = pytest.mark.browser


def test_helpdesk_finds_a_person_and_edits_their_vacation_from_the_user_page(
    page: Page, sign_in_as, make_directory_user
) -> None:
    person = make_directory_user()
    sign_in_as("helpdesk")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    page.get_by_label("Name, uid or address").fill(person.mail)
    page.get_by_label("State").select_option("active")
    page.get_by_role("button", name="Search").click()
    expect(page.locator(".result-count")).to_have_text("1 user matches.")
    page.get_by_role("link", name=person.uid).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(person.uid)

    # Folded until asked for, then the form is right there on the person's page.
    page.get_by_text("Set a vacation reply").click()
    page.get_by_label("Send vacation replies").check()
    page.get_by_label("Subject").fill("Out of the office")
    page.get_by_label("Reply text", exact=True).fill("Back on Monday; in urgent cases write to the desk.")
    page.get_by_role("button", name="Save the vacation reply").click()

    expect(page.get_by_role("status")).to_contain_text("Vacation reply saved")
    expect(page).to_have_url(f"/directory/users/{person.uid}/")
    section = page.locator("section", has=page.get_by_role("heading", name="Vacation reply"))
    expect(section).to_contain_text("“Out of the office”")
    expect(section.locator(".badge")).to_have_text("on")
    vacation = VacationReply.objects.get(uid=person.uid)
    assert vacation.enabled and vacation.updated_by and vacation.address == person.mail

    # The user list shows them away now, on a phone too.
    page.set_viewport_size(PHONE)
    page.goto(f"/directory/?q={person.uid}")
    expect(page.locator('td[data-label="State"]')).to_have_text("away")


def test_a_long_form_with_errors_puts_its_summary_first_and_focuses_it(page: Page, sign_in_as) -> None:
    sign_in_as("admin")
    page.goto("/directory/new/")
    page.get_by_label("User name (uid)").fill("Not A Uid")
    page.get_by_label("Full name").fill("Jane Doe")
    page.get_by_role("button", name="Create").click()
    summary = page.locator(".error-summary")
    expect(summary).to_be_focused()
    summary.get_by_role("link", name="User name (uid)").click()
    expect(page.get_by_label("User name (uid)")).to_be_focused()


def test_the_phone_menu_folds_and_unfolds_without_scripts(browser, live_server, make_directory_user) -> None:
    person = make_directory_user()
    context = browser.new_context(base_url=str(live_server), viewport=PHONE, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto("/accounts/sign-in/")
        page.get_by_label("User name").fill(person.mail)
        page.get_by_label("Password").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        nav = page.get_by_role("navigation", name="Main")
        expect(nav.get_by_role("link", name="Aliases")).to_be_hidden()
        nav.get_by_text("Menu").click()
        expect(nav.get_by_role("link", name="Aliases")).to_be_visible()
        nav.get_by_role("link", name="Aliases").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("alias")
        # Wide enough, the menu is simply there.
        page.set_viewport_size({"width": 1280, "height": 900})
        expect(nav.get_by_role("link", name="Vacation", exact=True)).to_be_visible()
        expect(nav.get_by_text("Menu")).to_be_hidden()
    finally:
        context.close()


def test_handover_rows_are_added_in_place_and_saved(page: Page, sign_in_as, make_directory_user) -> None:
    first, second = make_directory_user(), make_directory_user()
    user = sign_in_as("end user")
    page.goto("/handover/edit/")
    page.get_by_label("Away from").fill("2030-07-01T09:00")
    page.get_by_label("Back on").fill("2030-07-15T09:00")
    page.get_by_label("Primary delegate").fill(first.uid)
    page.locator("#id_topics-0-topic").fill("Invoices")
    page.locator("#id_topics-0-delegate").fill(first.uid)
    url = page.url
    page.get_by_role("button", name="Add another topic").click()
    expect(page.locator("#id_topics-1-topic")).to_be_focused()  # no round trip: the new row is here
    assert page.url == url
    page.locator("#id_topics-1-topic").fill("Payroll")
    page.locator("#id_topics-1-delegate").fill(second.uid)
    page.get_by_role("button", name="Add another work item").click()
    page.locator("#id_items-1-title").fill("Quarterly report")
    page.locator("#id_items-1-context").fill("Draft is in the shared folder.")
    page.get_by_role("button", name="Save the note").click()
    expect(page.get_by_role("status")).to_contain_text("saved")
    note = HandoverNote.objects.get(author__username=user.uid)
    assert sorted(note.topic_delegates.values_list("topic", "delegate_uid")) == [
        ("Invoices", first.uid),
        ("Payroll", second.uid),
    ]
    assert list(note.items.values_list("title", flat=True)) == ["Quarterly report"]
    assert page.console_problems == []  # type: ignore[attr-defined]
