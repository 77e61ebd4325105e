from datetime import datetime, time, timedelta
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from audit.models import AuditEvent
from mailadmin import dates


def _printable(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise forms.ValidationError("Control characters are not allowed.")
    return value


class AuditFilterForm(forms.Form):
    """The audit log's filters (a GET form: every field optional)."""

    actor = forms.CharField(label="Actor", required=False, max_length=150, help_text="The user name of whoever did it.")
    target = forms.CharField(
        label="Target", required=False, max_length=255, help_text="A user name or address, or part of one."
    )
    action = forms.ChoiceField(label="Action", required=False)
    since = dates.DateField(label="From", required=False)
    until = dates.DateField(label="To", required=False)

    def __init__(self, *args: Any, actions: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        action_field = self.fields["action"]
        assert isinstance(action_field, forms.ChoiceField)
        action_field.choices = [("", "Any action"), *((name, name) for name in actions)]

    def clean_actor(self) -> str:
        return _printable(self.cleaned_data["actor"])

    def clean_target(self) -> str:
        return _printable(self.cleaned_data["target"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", "The end date is before the start date.")
        return cleaned

    def filter(self, events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        data = self.cleaned_data
        if data.get("actor"):
            events = events.filter(actor_name__iexact=data["actor"])
        if data.get("target"):
            events = events.filter(target__icontains=data["target"])
        if data.get("action"):
            events = events.filter(action=data["action"])
        # Whole days in the viewer's time zone (activated by mailadmin.timezones).
        zone = timezone.get_current_timezone()
        if data.get("since"):
            events = events.filter(created_at__gte=datetime.combine(data["since"], time.min, tzinfo=zone))
        if data.get("until"):
            end = datetime.combine(data["until"] + timedelta(days=1), time.min, tzinfo=zone)
            events = events.filter(created_at__lt=end)
        return events
