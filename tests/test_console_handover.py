"""The handover form: its dates start from the author's vacation reply, common time zones come
first, and rows are added in place (browser test in tests/browser/test_console.py)."""

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from django.utils import formats

from mailadmin import dates
from outofoffice.models import VacationReply
from tests.test_handover import make_note

pytestmark = pytest.mark.django_db
EDIT_URL = "/handover/edit/"


def test_a_new_note_takes_its_dates_from_the_vacation_reply_in_the_viewers_zone(sign_in: Any) -> None:
    author = sign_in()
    person = author.directory_user
    VacationReply.objects.create(
        uid=person.uid,
        address=person.mail,
        enabled=True,
        starts_at=datetime(2026, 12, 21, 8, 0, tzinfo=UTC),
        ends_at=datetime(2027, 1, 4, 8, 0, tzinfo=UTC),
    )
    author.cookies["tz"] = "Europe/Berlin"
    page = author.get(EDIT_URL).content.decode()
    shown = formats.get_format("DATETIME_FORMAT")  # the one date format of the site (mailadmin/dates.py)
    assert f'name="starts_at" value="{dates.format_value(datetime(2026, 12, 21, 9, 0), shown)}"' in page
    assert f'name="ends_at" value="{dates.format_value(datetime(2027, 1, 4, 9, 0), shown)}"' in page
    assert page.count("Taken from your vacation reply.") == 2


def test_without_a_vacation_reply_the_dates_start_empty(sign_in: Any) -> None:
    page = sign_in().get(EDIT_URL).content.decode()
    assert re.search(r'<input type="text" name="starts_at"(?![^>]*value=)', page)
    assert "Taken from your vacation reply." not in page


def test_common_time_zones_come_first_with_the_viewers_own_on_top(sign_in: Any) -> None:
    author = sign_in()
    author.cookies["tz"] = "Asia/Tokyo"
    page = author.get(EDIT_URL).content.decode()
    common = page[page.index('<optgroup label="Common time zones">') : page.index('<optgroup label="All time zones">')]
    options = re.findall(r'<option value="([^"]+)"', common)
    assert options[0] == "Asia/Tokyo" and "Europe/Berlin" in options and "America/New_York" in options
    every = page[page.index('<optgroup label="All time zones">') :]
    assert '"Europe/Berlin"' not in every and '"Africa/Abidjan"' in every  # each zone once
    assert '<option value="Asia/Tokyo" selected>' in page


def test_the_page_carries_empty_rows_for_scripts_to_add(sign_in: Any) -> None:
    page = sign_in().get(EDIT_URL).content.decode()
    for prefix in ("topics", "items"):
        template = page[page.index(f'<template id="{prefix}-empty">') :]
        template = template[: template.index("</template>")]
        assert f'name="{prefix}-__prefix__-' in template
        assert f'data-formset="{prefix}"' in page


def test_the_own_vacation_page_offers_the_handover_note_address(sign_in: Any, make_directory_user: Any) -> None:
    author = sign_in()
    note = make_note(author, make_directory_user().uid)
    page = author.get("/out-of-office/vacation/").content.decode()
    assert f"Your handover note: <code>http://testserver/handover/{note.pk}/</code>" in page
    # Not on the helpdesk's page for that person: it is the author's own hint.
    helpdesk = sign_in("helpdesk")
    staff_page = helpdesk.get(f"/out-of-office/helpdesk/{author.directory_user.uid}/").content.decode()
    assert "Your handover note" not in staff_page
