"""One way to show dates and times, everywhere: pages, forms, audit details and mails.

The formats come from the locale (settings.LANGUAGE_CODE, MAILADMIN_LANGUAGE_CODE; English
ones in mailadmin/formats/): a 24-hour clock, e.g. "7 Dec 2026, 09:00". Times are shown in the
viewer's zone (mailadmin/timezones.py); text stored or mailed names its zone.

Templates (built in, no {% load %}): `{{ when|exact }}`, `{{ day|day }}` and `{{ when|relative }}`
("in 3 days", the exact time in the title). Forms: DateTimeField and DateField, plain text
inputs that show and accept the same format (a browser's own date input follows the browser's
language, not the page's, and shows mm/dd/yyyy AM/PM to many people).
"""

from datetime import date, datetime, timedelta
from typing import Any

from django import forms, template
from django.utils import dateformat, formats, timezone
from django.utils.functional import lazy
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import format_lazy
from django.utils.timesince import timesince, timeuntil

register = template.Library()

# Nearer than this to now reads "just now" (or "in a minute") instead of "0 minutes ago".
JUST_NOW = timedelta(seconds=60)


def _local(value: datetime) -> datetime:
    # As the date filter does: in the active zone, unless the |timezone filter chose another.
    if timezone.is_aware(value) and getattr(value, "convert_to_local_time", True):
        return timezone.localtime(value)
    return value


def format_datetime(value: datetime, *, zone: bool = False) -> str:
    """The exact time in the locale's format, in the active zone; zone=True adds the zone's
    name (for text read elsewhere: audit details, mails)."""
    local = _local(value)
    text = dateformat.format(local, formats.get_format("DATETIME_FORMAT"))
    if zone and local.tzinfo is not None:
        text += f" ({getattr(local.tzinfo, 'key', None) or local.tzname()})"
    return text


def format_date(value: date) -> str:
    if isinstance(value, datetime):
        value = _local(value).date()
    return dateformat.format(value, formats.get_format("DATE_FORMAT"))


def describe_relative(value: datetime, now: datetime | None = None) -> str:
    """ "in 3 days", "5 hours ago", "just now": the largest unit only."""
    now = now or timezone.now()
    if abs(value - now) < JUST_NOW:
        return "just now"
    if value > now:
        return f"in {timeuntil(value, now, depth=1)}"
    return f"{timesince(value, now, depth=1)} ago"


def _iso(value: date) -> str:
    return _local(value).isoformat() if isinstance(value, datetime) else value.isoformat()


@register.filter
def exact(value: datetime | None) -> SafeString | str:
    """<time> with the exact date and time (empty for None)."""
    if not isinstance(value, datetime):
        return ""
    return format_html('<time datetime="{}">{}</time>', _iso(value), format_datetime(value))


@register.filter
def day(value: date | None) -> SafeString | str:
    if not isinstance(value, date):
        return ""
    return format_html('<time datetime="{}">{}</time>', _iso(value)[:10], format_date(value))


@register.filter
def relative(value: datetime | None) -> SafeString | str:
    """For lists: "in 3 days", with the exact time as the element's title and for screen readers."""
    if not isinstance(value, datetime):
        return ""
    exact_text = format_datetime(value)
    return format_html(
        '<time datetime="{}" title="{}">{}<span class="visually-hidden"> ({})</span></time>',
        _iso(value),
        exact_text,
        describe_relative(value),
        exact_text,
    )


EXAMPLE = datetime(2026, 12, 7, 9, 0)


def _example(format_name: str) -> str:
    return dateformat.format(EXAMPLE, formats.get_format(format_name))


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
            return dateformat.format(value, formats.get_format("DATETIME_FORMAT"))
        return super().format_value(value)  # type: ignore[no-any-return]


class DateInput(forms.DateInput):
    input_type = "text"

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(_text_attrs(attrs, "DATE_FORMAT"))

    def format_value(self, value: Any) -> str | None:
        if isinstance(value, date):
            return dateformat.format(value, formats.get_format("DATE_FORMAT"))
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
