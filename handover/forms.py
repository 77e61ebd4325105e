import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from django import forms
from django.conf import settings
from django.core.validators import EmailValidator, URLValidator
from django.db import transaction
from django.forms import BaseInlineFormSet, inlineformset_factory
from django.utils import timezone

from accounts import directory
from accounts.forms import UNAVAILABLE
from handover.models import HandoverNote, TopicDelegate, WorkItem
from mailadmin import dates
from mailadmin.dates import format_datetime

MAX_WORK_ITEMS = 30
MAX_TOPIC_DELEGATES = 20
MAX_LINKS_PER_ITEM = 10
MAX_LINK_LENGTH = 2000
MAX_ABSENCE = timedelta(days=366)
TIME_ZONES = sorted(available_timezones() - {"localtime", "Factory"})
# Offered first, after the viewer's own zone and the site's: where most organisations are.
COMMON_TIME_ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Lisbon",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Amsterdam",
    "Europe/Zurich",
    "Europe/Vienna",
    "Europe/Rome",
    "Europe/Madrid",
    "Europe/Warsaw",
    "Europe/Helsinki",
    "Europe/Athens",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Australia/Sydney",
)


def time_zone_choices(first: list[str]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The zone list: `first` and the common zones on top, then every other zone."""
    known = set(TIME_ZONES)
    common = [zone for zone in dict.fromkeys([*first, *COMMON_TIME_ZONES]) if zone in known]
    rest = [zone for zone in TIME_ZONES if zone not in set(common)]
    return [
        ("Common time zones", [(zone, zone) for zone in common]),
        ("All time zones", [(zone, zone) for zone in rest]),
    ]


# U+2028/U+2029 end a line in many viewers and mail clients even though they are not Cc;
# bidi overrides and isolates can make a name or a link read as something else.
_REFUSED = {"\u2028", "\u2029", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}


def reject_control_characters(value: str) -> None:
    if any(unicodedata.category(c) == "Cc" or c in _REFUSED for c in value):
        raise forms.ValidationError(
            "Line breaks and control characters (including text-direction overrides) are not allowed here.",
            code="control",
        )


def reject_control_characters_except_lines(value: str) -> None:
    if any((unicodedata.category(c) == "Cc" and c not in "\n\t") or c in _REFUSED for c in value):
        raise forms.ValidationError(
            "Control characters (including text-direction overrides) are not allowed.", code="control"
        )


class SingleLineField(forms.CharField):
    default_validators = [reject_control_characters]


class NoteSearchForm(forms.Form):
    """The admins' list of every note: a part of the author's or primary delegate's name or uid."""

    q = SingleLineField(label="Author or primary delegate", max_length=100, required=False)

    @property
    def query(self) -> str:
        return str(self.cleaned_data.get("q") or "").strip() if self.is_valid() else ""


class MultiLineField(forms.CharField):
    default_validators = [reject_control_characters_except_lines]

    def __init__(self, *, max_length: int, rows: int = 4, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(max_length=max_length, widget=forms.Textarea(attrs={"rows": rows}), **kwargs)

    def to_python(self, value: Any) -> str:
        # Browsers send CRLF; store one kind of line break.
        return str(super().to_python(value)).replace("\r\n", "\n").replace("\r", "\n")


class LinksField(MultiLineField):
    """http(s) URLs, one per line; anything else (javascript:, data:, ...) is refused."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=MAX_LINKS_PER_ITEM * (MAX_LINK_LENGTH + 1), rows=2, **kwargs)

    def clean(self, value: Any) -> str:
        text = super().clean(value)
        links = [line.strip() for line in text.split("\n") if line.strip()]
        if len(links) > MAX_LINKS_PER_ITEM:
            raise forms.ValidationError(f"At most {MAX_LINKS_PER_ITEM} links per item.", code="too_many")
        check = URLValidator(schemes=["http", "https"])
        for link in links:
            try:
                if len(link) > MAX_LINK_LENGTH:
                    raise forms.ValidationError("too long")
                check(link)
            except forms.ValidationError:
                raise forms.ValidationError(
                    "Each line must be one web address starting with http:// or https:// (%(link)s).",
                    code="invalid_link",
                    params={"link": link[:80]},
                ) from None
        return "\n".join(links)


class WallClockField(dates.DateTimeField):
    """A date and time as the person typed it, without a zone; the form applies the zone they chose."""

    def to_python(self, value: Any) -> datetime | None:
        with timezone.override(UTC):
            result = super().to_python(value)
        return result.replace(tzinfo=None) if result is not None else None


class DirectoryUserField(SingleLineField):
    """A colleague chosen by uid or mail address; must exist in the directory."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 320)
        kwargs.setdefault("help_text", "Their user name or mail address.")
        super().__init__(**kwargs)

    def clean(self, value: Any) -> directory.DirectoryUser | None:
        text = super().clean(value)
        if not text:
            return None
        text = text.strip()
        not_found = forms.ValidationError(
            "There is no user %(value)s in the directory.", code="unknown", params={"value": text}
        )
        try:
            if "@" in text:
                EmailValidator(message="Enter a user name or a mail address.")(text)
                user = directory.find_user_by_mail(text.lower())
            elif directory.UID_PATTERN.fullmatch(text):
                user = directory.get_user(text)
            else:
                raise not_found
        except directory.DirectoryUnavailable:
            raise forms.ValidationError(UNAVAILABLE, code="unavailable") from None
        if user is None:
            raise not_found
        return user


class NoteForm(forms.ModelForm):
    starts_at = WallClockField(label="Away from")
    ends_at = WallClockField(label="Back on")
    time_zone = forms.ChoiceField(label="Time zone", help_text="The zone of the two times above.")
    reachability = SingleLineField(
        label="Reachability",
        max_length=300,
        required=False,
        help_text="For example: reachable by phone for emergencies only.",
    )
    primary_delegate = DirectoryUserField(label="Primary delegate")
    pending_decisions = MultiLineField(label="Pending decisions", max_length=4000)
    contacts = MultiLineField(label="Contacts", max_length=4000, help_text="Who to ask about what, one per line.")

    class Meta:
        model = HandoverNote
        fields = ["starts_at", "ends_at", "time_zone", "reachability", "pending_decisions", "contacts"]

    def __init__(
        self,
        *args: Any,
        author_uid: str,
        absence: tuple[datetime | None, datetime | None] = (None, None),
        **kwargs: Any,
    ) -> None:
        """`absence`: the start and end of the author's vacation reply, which a new note starts from."""
        super().__init__(*args, **kwargs)
        self.author_uid = author_uid
        note = self.instance
        viewer_zone = timezone.get_current_timezone_name()
        zone_field = self.fields["time_zone"]
        assert isinstance(zone_field, forms.ChoiceField)
        zone_field.choices = time_zone_choices([note.time_zone if note.pk else viewer_zone, settings.TIME_ZONE])
        if note.pk:
            self.initial.update(
                starts_at=note.local_starts_at.replace(tzinfo=None),
                ends_at=note.local_ends_at.replace(tzinfo=None),
                primary_delegate=note.primary_delegate_uid,
            )
            return
        # A new note starts in the viewer's own zone (the browser's, when it told us)...
        zone = viewer_zone if viewer_zone in TIME_ZONES else settings.TIME_ZONE
        self.initial["time_zone"] = zone
        # ...and from the dates of their vacation reply, when it has them.
        for name, moment in zip(("starts_at", "ends_at"), absence, strict=True):
            if moment is not None:
                self.initial[name] = moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None, second=0, microsecond=0)
                self.fields[name].help_text = "Taken from your vacation reply."

    def clean_primary_delegate(self) -> directory.DirectoryUser | None:
        user = self.cleaned_data.get("primary_delegate")
        if user is not None and user.uid == self.author_uid:
            raise forms.ValidationError("Name someone other than yourself.", code="self")
        return user

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        zone_name = cleaned.get("time_zone")
        if not zone_name:
            # The form is invalid anyway; keep model validation from meeting naive datetimes.
            for name in ("starts_at", "ends_at"):
                if cleaned.get(name) is not None:
                    cleaned[name] = cleaned[name].replace(tzinfo=UTC)
            return cleaned
        zone = ZoneInfo(zone_name)
        for name in ("starts_at", "ends_at"):
            wall = cleaned.get(name)
            if wall is None:
                continue
            aware = wall.replace(tzinfo=zone)
            if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall:
                self.add_error(name, f"That time does not exist in {zone_name} (the clocks skip it).")
            else:
                cleaned[name] = aware
        starts, ends = cleaned.get("starts_at"), cleaned.get("ends_at")
        if starts is not None and ends is not None:
            if ends <= starts:
                self.add_error("ends_at", "The end must come after the start.")
            elif ends - starts > MAX_ABSENCE:
                self.add_error("ends_at", "An absence window can be at most a year long.")
        return cleaned


class TopicDelegateForm(forms.ModelForm):
    topic = SingleLineField(label="Topic", max_length=100)
    delegate = DirectoryUserField(label="Delegate")

    class Meta:
        model = TopicDelegate
        fields = ["topic"]

    def __init__(self, *args: Any, author_uid: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.author_uid = author_uid
        if self.instance.pk:
            self.initial["delegate"] = self.instance.delegate_uid

    def clean_delegate(self) -> directory.DirectoryUser | None:
        user = self.cleaned_data.get("delegate")
        if user is not None and user.uid == self.author_uid:
            raise forms.ValidationError("Name someone other than yourself.", code="self")
        return user

    def save(self, commit: bool = True) -> TopicDelegate:
        row: TopicDelegate = super().save(commit=False)
        user: directory.DirectoryUser = self.cleaned_data["delegate"]
        row.delegate_uid, row.delegate_name, row.delegate_mail = user.uid, user.display_name, user.mail
        if commit:
            row.save()
        return row


class WorkItemForm(forms.ModelForm):
    title = SingleLineField(label="Title", max_length=200)
    links = LinksField(label="Links", required=False, help_text="Web addresses (http or https), one per line.")
    context = MultiLineField(label="Context and key decisions", max_length=4000)
    status = SingleLineField(label="Status", max_length=200, required=False)
    next_step = SingleLineField(label="Next step", max_length=300, required=False)
    next_step_owner = SingleLineField(label="Next step owner", max_length=200, required=False)
    deadline = dates.DateField(label="Deadline", required=False)
    blockers = MultiLineField(label="Blockers", max_length=2000, rows=2)

    class Meta:
        model = WorkItem
        fields = [
            "title",
            "priority",
            "status",
            "deadline",
            "next_step",
            "next_step_owner",
            "context",
            "links",
            "blockers",
        ]
        widgets = {"priority": forms.RadioSelect}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("next_step") and not cleaned.get("next_step_owner"):
            self.add_error("next_step_owner", "Name who takes the next step.")
        return cleaned


class NoteChildFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        # Django silently drops an existing-row id that is not among this note's rows (a forged
        # id, or a row deleted in another tab); refuse the whole submission instead.
        if any(form.instance.pk is None for form in self.initial_forms):
            raise forms.ValidationError(
                "This page is out of date: a row on it no longer exists. Reload the page and try again.",
                code="stale",
            )

    def add_fields(self, form: forms.ModelForm, index: int | None) -> None:
        super().add_fields(form, index)
        if "DELETE" in form.fields:
            form.fields["DELETE"].label = "Remove this row when saving"


TopicDelegateFormSet = inlineformset_factory(
    HandoverNote,
    TopicDelegate,
    form=TopicDelegateForm,
    formset=NoteChildFormSet,
    extra=1,
    max_num=MAX_TOPIC_DELEGATES,
    absolute_max=MAX_TOPIC_DELEGATES,
    validate_max=True,
    can_delete=True,
)

WorkItemFormSet = inlineformset_factory(
    HandoverNote,
    WorkItem,
    form=WorkItemForm,
    formset=NoteChildFormSet,
    extra=1,
    max_num=MAX_WORK_ITEMS,
    absolute_max=MAX_WORK_ITEMS,
    validate_max=True,
    can_delete=True,
)


def save_note(
    form: NoteForm, topics: "BaseInlineFormSet[Any, Any, Any]", items: "BaseInlineFormSet[Any, Any, Any]"
) -> HandoverNote:
    """Write a validated note and its rows together (the directory was consulted during validation)."""
    with transaction.atomic():
        note: HandoverNote = form.save(commit=False)
        delegate: directory.DirectoryUser = form.cleaned_data["primary_delegate"]
        note.primary_delegate_uid = delegate.uid
        note.primary_delegate_name = delegate.display_name
        note.primary_delegate_mail = delegate.mail
        note.save()
        topics.instance = items.instance = note
        topics.save()
        items.save()
    return note


def describe(note: HandoverNote) -> str:
    """A one-line summary for the audit log (no free text from the note)."""
    items = list(note.items.all())
    urgent = sum(item.is_urgent for item in items)
    topic_uids = sorted({t.delegate_uid for t in note.topic_delegates.all()})
    return (
        f"{format_datetime(note.starts_at, zone=True)} to {format_datetime(note.ends_at, zone=True)}; primary delegate "
        f"{note.primary_delegate_uid}; topic delegates: {', '.join(topic_uids) or 'none'}; "
        f"{len(items)} work items ({urgent} urgent)"
    )
