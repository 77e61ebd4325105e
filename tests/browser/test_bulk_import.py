"""An admin imports aliases from a CSV file in the browser: the dry run lists the errors by
line, then the good rows are imported. The test plays the Celery worker's part (it runs the
job by its id, as the task does); the page follows by reloading itself."""

import re

import pytest
from django.conf import settings
from playwright.sync_api import Page, expect

from aliases.models import Alias, Domain
from bulk import services
from bulk.models import ImportJob
from tests.browser.conftest import PHONE

pytestmark = pytest.mark.browser


@pytest.fixture
def alias_domain(db) -> Domain:
    domain, _ = Domain.objects.get_or_create(name=settings.ALIAS_DOMAIN, defaults={"is_alias_domain": True})
    return domain


def _job_on_page(page: Page) -> ImportJob:
    match = re.search(r"/bulk/imports/(\d+)/$", page.url)
    assert match, page.url
    return ImportJob.objects.get(pk=int(match.group(1)))


def test_an_admin_checks_a_csv_file_sees_the_errors_by_line_then_imports_the_good_rows(
    page: Page, sign_in_as, make_directory_user, alias_domain
) -> None:
    owner = make_directory_user()
    sign_in_as("admin")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Import and export").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Import and export")

    text = (
        "address,owner,note\n"
        f"newsletter@{alias_domain.name},{owner.uid},from the old server\n"
        f"shop@{alias_domain.name},nobody-here,\n"
    )
    page.get_by_label("Aliases for people who are in the directory").check()
    page.get_by_label("CSV file", exact=True).set_input_files(
        files=[{"name": "aliases.csv", "mimeType": "text/csv", "buffer": text.encode()}]
    )
    page.get_by_role("button", name="Check the file (dry run)").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Dry run of aliases")
    expect(page.get_by_role("heading", name="Waiting for the worker")).to_be_visible()

    services.run_import(_job_on_page(page).pk)  # the worker
    expect(page.get_by_role("heading", name="Finished")).to_be_visible()  # the page reloaded itself
    errors = page.locator("table.import-errors tbody tr")
    expect(errors).to_have_count(1)
    expect(errors.first).to_contain_text("3")
    expect(errors.first).to_contain_text("There is no user 'nobody-here'")
    assert not Alias.objects.filter(domain=alias_domain).exists()

    page.get_by_role("button", name="Import 1 row, leave out the 1 with errors").click()
    assert page.dialogs == ["Import 1 row now?"]  # type: ignore[attr-defined]
    expect(page.get_by_role("heading", level=1)).to_have_text("Import of aliases")
    services.run_import(_job_on_page(page).pk)
    expect(page.get_by_role("heading", name="Finished")).to_be_visible()
    expect(page.locator(".import-counts")).to_contain_text("Created: 1")
    alias = Alias.objects.get(domain=alias_domain)
    assert (alias.address, alias.owner.username, alias.label) == (
        f"newsletter@{alias_domain.name}",
        owner.uid,
        "from the old server",
    )
    page.set_viewport_size(PHONE)
    page.goto(f"/bulk/imports/{ImportJob.objects.get(dry_run=True).pk}/")  # the errors table, on a phone
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 0
    assert page.console_problems == []  # type: ignore[attr-defined]
