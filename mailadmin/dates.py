"""One way to show dates and times, everywhere: pages, forms, audit details and mails.

The formats come from the locale (settings.LANGUAGE_CODE, MAILADMIN_LANGUAGE_CODE; English
ones in mailadmin/formats/): a 24-hour clock, e.g. "7 Dec 2026, 09:00". Times are shown in the
viewer's zone (mailadmin/timezones.py); text stored or mailed names its zone.

Templates (built in, no {% load %}): `{{ when|exact }}`, `{{ day|day }}` and `{{ when|relative }}`
("in 3 days", the exact time in the title). Forms: DateTimeField and DateField, plain text
inputs that show and accept the same format (a browser's own date input follows the browser's
language, not the page's, and shows mm/dd/yyyy AM/PM to many people).
"""

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import lru_cache
from html import escape
from typing import Any

from django import forms, template
from django.utils import dateformat, formats, timezone, translation
from django.utils.dates import MONTHS, MONTHS_3, WEEKDAYS, WEEKDAYS_ABBR
from django.utils.functional import lazy
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import format_lazy

register = template.Library()

# Nearer than this to now reads "just now" (or "in a minute") instead of "0 minutes ago".
JUST_NOW = timedelta(seconds=60)


def local(value: datetime) -> datetime:
    """As the date filter does: in the active zone, unless the |timezone filter chose another."""
    if timezone.is_aware(value) and getattr(value, "convert_to_local_time", True):
        return timezone.localtime(value)
    return value


# Django's format characters (django.utils.dateformat). The common ones are computed here directly:
# the alias list shows two dates per row, and Django's formatter costs tens of microseconds each.
FORMAT_CHARACTERS = re.compile(r"(?<!\\)([aAbcdDeEfFgGhHiIjlLmMnNoOPrsStTUuwWyYzZ])")
ESCAPED = re.compile(r"\\(.)")
_DIRECT: dict[str, Callable[[Any, dict[str, list[str]]], str]] = {
    "d": lambda v, n: f"{v.day:02d}",
    "j": lambda v, n: str(v.day),
    "m": lambda v, n: f"{v.month:02d}",
    "n": lambda v, n: str(v.month),
    "b": lambda v, n: n["b"][v.month],
    "M": lambda v, n: n["M"][v.month],
    "F": lambda v, n: n["F"][v.month],
    "D": lambda v, n: n["D"][v.weekday()],
    "l": lambda v, n: n["l"][v.weekday()],
    "Y": lambda v, n: f"{v.year:04d}",
    "y": lambda v, n: f"{v.year % 100:02d}",
    "H": lambda v, n: f"{v.hour:02d}",
    "G": lambda v, n: str(v.hour),
    "i": lambda v, n: f"{v.minute:02d}",
    "s": lambda v, n: f"{v.second:02d}",
}
_TIME_CHARACTERS = frozenset("HGis")


@lru_cache(maxsize=64)
def _plan(format_string: str) -> tuple[tuple[bool, str], ...] | None:
    """The format as (is a format character, text) pieces, or None if it uses one not in _DIRECT."""
    plan = []
    for i, piece in enumerate(FORMAT_CHARACTERS.split(format_string)):
        if i % 2:
            if piece not in _DIRECT:
                return None
            plan.append((True, piece))
        elif piece:
            plan.append((False, ESCAPED.sub(r"\1", piece)))
    return tuple(plan)


@lru_cache(maxsize=16)
def _names(language: str | None) -> dict[str, list[str]]:
    # Month and day names in the active language, resolved once per language.
    months = range(1, 13)
    return {
        "b": ["", *(str(MONTHS_3[m]) for m in months)],
        "M": ["", *(str(MONTHS_3[m]).title() for m in months)],
        "F": ["", *(str(MONTHS[m]) for m in months)],
        "D": [str(WEEKDAYS_ABBR[d]) for d in range(7)],
        "l": [str(WEEKDAYS[d]) for d in range(7)],
    }


def format_value(value: date, format_string: str) -> str:
    """Django's dateformat.format(value, format_string), faster for the usual characters."""
    plan = _plan(format_string)
    if plan is None or (
        not isinstance(value, datetime) and any(char and text in _TIME_CHARACTERS for char, text in plan)
    ):
        return dateformat.format(value, format_string)
    names = _names(translation.get_language())
    return "".join(_DIRECT[text](value, names) if char else text for char, text in plan)


def format_datetime(value: datetime, *, zone: bool = False) -> str:
    """The exact time in the locale's format, in the active zone; zone=True adds the zone's
    name (for text read elsewhere: audit details, mails)."""
    shown = local(value)
    text = format_value(shown, formats.get_format("DATETIME_FORMAT"))
    if zone and shown.tzinfo is not None:
        text += f" ({getattr(shown.tzinfo, 'key', None) or shown.tzname()})"
    return text


def format_date(value: date) -> str:
    if isinstance(value, datetime):
        value = local(value).date()
    return format_value(value, formats.get_format("DATE_FORMAT"))


# (seconds in the unit, singular, plural), largest first: "3 days", like Django's timesince.
UNITS = (
    (365 * 86400, "year", "years"),
    (30 * 86400, "month", "months"),
    (7 * 86400, "week", "weeks"),
    (86400, "day", "days"),
    (3600, "hour", "hours"),
    (60, "minute", "minutes"),
)


def _span(seconds: float) -> str:
    # The largest unit that fits, rounded: Monday 10:00 to Thursday 09:00 is "3 days", not 2.
    for size, one, many in UNITS:
        if seconds >= size:
            count = int(seconds / size + 0.5)
            return f"{count}\xa0{one if count == 1 else many}"
    return "1\xa0minute"


def describe_relative(value: datetime, now: datetime | None = None) -> str:
    """ "in 3 days", "5 hours ago", "just now": the largest unit that fits, rounded."""
    now = now or timezone.now()
    seconds = (value - now).total_seconds()
    if abs(seconds) < JUST_NOW.total_seconds():
        return "just now"
    return f"in {_span(seconds)}" if seconds > 0 else f"{_span(-seconds)} ago"


def _iso(value: date) -> str:
    return local(value).isoformat() if isinstance(value, datetime) else value.isoformat()


# The filters build their HTML directly: a list calls them for every row, and format_html's
# checks for lazy text cost more than the formatting. Every value is escaped.


@register.filter
def exact(value: datetime | None) -> SafeString | str:
    """<time> with the exact date and time (empty for None)."""
    if not isinstance(value, datetime):
        return ""
    return mark_safe(f'<time datetime="{_iso(value)}">{escape(format_datetime(value))}</time>')  # noqa: S308


@register.filter
def day(value: date | None) -> SafeString | str:
    if not isinstance(value, date):
        return ""
    return mark_safe(f'<time datetime="{_iso(value)[:10]}">{escape(format_date(value))}</time>')  # noqa: S308


class RelativeTimes:
    """|relative for the many values of one page (a list's rows): the zone, the format and the
    moment are looked up once, not for every value (~10 µs each otherwise)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or timezone.now()
        self.zone = timezone.get_current_timezone()
        self.format = formats.get_format("DATETIME_FORMAT")
        self.plan = _plan(self.format)
        self.names = _names(translation.get_language())

    def exact(self, value: datetime) -> str:
        # local() and format_value() with what __init__ looked up.
        if timezone.is_aware(value) and getattr(value, "convert_to_local_time", True):
            value = value.astimezone(self.zone)
        if self.plan is None:
            return format_value(value, self.format)
        return "".join(_DIRECT[text](value, self.names) if char else text for char, text in self.plan)

    def __call__(self, value: datetime | None) -> SafeString | str:
        if not isinstance(value, datetime):
            return ""
        text = escape(self.exact(value))
        return mark_safe(  # noqa: S308
            f'<time datetime="{value.isoformat()}" title="{text}">{describe_relative(value, self.now)}'
            f'<span class="visually-hidden"> ({text})</span></time>'
        )


@register.filter
def relative(value: datetime | None) -> SafeString | str:
    """For lists: "in 3 days", with the exact time as the element's title and for screen readers."""
    return RelativeTimes()(value)


EXAMPLE = datetime(2026, 12, 7, 9, 0)


def _example(format_name: str) -> str:
    return format_value(EXAMPLE, formats.get_format(format_name))


# Lazy: the locale's formats can only be read once the apps are loaded.
example = lazy(_example, str)


def _text_attrs(attrs: dict[str, Any] | None, format_name: str) -> dict[str, Any]:
    # Text inputs showing the locale's format (see the module's docstring for why not native).
    return {
        "autocomplete": "off",
        "spellcheck": "false",
        "placeholder": format_lazy("e.g. {}", example(format_name)),
        **(attrs or {}),
    }


class DateTimeInput(forms.DateTimeInput):
    input_type = "text"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(_text_attrs(attrs, "DATETIME_FORMAT"))

    def format_value(self, value: Any) -> str | None:
        if isinstance(value, datetime):
            return format_value(value, formats.get_format("DATETIME_FORMAT"))
        return super().format_value(value)  # type: ignore[no-any-return]


class DateInput(forms.DateInput):
    input_type = "text"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(_text_attrs(attrs, "DATE_FORMAT"))

    def format_value(self, value: Any) -> str | None:
        if isinstance(value, date):
            return format_value(value, formats.get_format("DATE_FORMAT"))
        return super().format_value(value)  # type: ignore[no-any-return]


class DateTimeField(forms.DateTimeField):
    """A date and time in the viewer's zone, typed as shown (or ISO 8601)."""

    widget = DateTimeInput

    def __init__(self, **kwargs: Any) -> None:
        invalid = format_lazy("Enter a date and time such as {}.", example("DATETIME_FORMAT"))
        kwargs.setdefault("error_messages", {"invalid": invalid})
        super().__init__(**kwargs)


class DateField(forms.DateField):
    widget = DateInput

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "error_messages", {"invalid": format_lazy("Enter a date such as {}.", example("DATE_FORMAT"))}
        )
        super().__init__(**kwargs)
