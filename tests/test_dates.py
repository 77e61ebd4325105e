"""One way to show dates: the locale's 24-hour format in pages, forms, audit details and mails."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django import forms
from django.utils import dateformat, timezone

from mailadmin import dates

MOMENT = datetime(2026, 12, 7, 8, 5, tzinfo=UTC)


class WhenForm(forms.Form):
    when = dates.DateTimeField(required=False)
    day = dates.DateField(required=False)


def test_exact_times_are_24_hour_with_the_month_as_a_word() -> None:
    assert dates.format_datetime(MOMENT) == "7 Dec 2026, 08:05"
    assert dates.format_datetime(MOMENT.replace(hour=21)) == "7 Dec 2026, 21:05"
    assert dates.format_date(MOMENT) == "7 Dec 2026"


def test_text_read_elsewhere_names_its_zone() -> None:
    with timezone.override(ZoneInfo("Europe/Berlin")):
        assert dates.format_datetime(MOMENT, zone=True) == "7 Dec 2026, 09:05 (Europe/Berlin)"


def test_lists_say_how_far_away_and_keep_the_exact_time_at_hand() -> None:
    now = timezone.now()
    html = str(dates.relative(now + timedelta(days=3, hours=2)))
    assert ">in 3\xa0days<" in html
    assert f'title="{dates.format_datetime(now + timedelta(days=3, hours=2))}"' in html
    assert dates.describe_relative(now - timedelta(hours=5), now) == "5\xa0hours ago"
    assert dates.describe_relative(now + timedelta(seconds=10), now) == "just now"
    assert dates.describe_relative(now + timedelta(days=2, hours=23), now) == "in 3\xa0days"
    assert dates.describe_relative(now - timedelta(hours=14), now) == "14\xa0hours ago"
    assert dates.describe_relative(now + timedelta(days=400), now) == "in 1\xa0year"


def test_template_filters_leave_nothing_for_an_empty_date() -> None:
    assert dates.exact(None) == dates.day(None) == dates.relative(None) == ""


@pytest.mark.parametrize(
    "typed", ["7 Dec 2026, 09:00", "07 Dec 2026 09:00", "2026-12-07 09:00", "2026-12-07T09:00", "07/12/2026 09:00"]
)
def test_date_inputs_take_the_shown_format_and_iso(typed: str) -> None:
    form = WhenForm({"when": typed, "day": "7 Dec 2026"})
    assert form.is_valid(), form.errors
    assert timezone.localtime(form.cleaned_data["when"]).strftime("%Y-%m-%d %H:%M") == "2026-12-07 09:00"


@pytest.mark.parametrize("typed", ["12/07/2026 9:00 PM", "Dec 7, 2026, 9 a.m.", "2026-13-01 09:00", "<b>"])
def test_twelve_hour_and_month_first_inputs_are_refused_with_an_example(typed: str) -> None:
    form = WhenForm({"when": typed})
    assert not form.is_valid()
    assert form.errors["when"] == ["Enter a date and time such as 7 Dec 2026, 09:00."]


def test_date_inputs_are_text_showing_the_same_format() -> None:
    html = str(WhenForm(initial={"when": MOMENT, "day": MOMENT.date()}))
    assert 'type="text" name="when" value="7 Dec 2026, 08:05"' in html
    assert 'type="text" name="day" value="7 Dec 2026"' in html
    assert "datetime-local" not in html and 'type="date"' not in html
    assert 'placeholder="e.g. 7 Dec 2026, 09:00"' in html


@pytest.mark.django_db
def test_pages_declare_the_locale_of_their_dates(client) -> None:
    assert '<html lang="en-gb">' in client.get("/accounts/sign-in/").content.decode()


@pytest.mark.parametrize(
    "format_string", ["j M Y, H:i", "D j M Y, H:i", "d/m/Y H:i:s", "l j F Y", "n/j/y G:i", r"j \d\e M", "N j, Y, P"]
)
def test_the_fast_formatter_writes_what_djangos_does(format_string: str) -> None:
    moment = datetime(2026, 1, 4, 7, 5, 9, tzinfo=UTC)
    for value in (moment + timedelta(days=37 * n, hours=5 * n) for n in range(12)):
        assert dates.format_value(value, format_string) == dateformat.format(value, format_string)
    assert dates.format_value(moment.date(), "j M Y") == dateformat.format(moment.date(), "j M Y")
