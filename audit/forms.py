from datetime import datetime, time, timedelta
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.http import urlencode

from audit.actions import SIGN_INS, action_name
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
    sign_ins = forms.BooleanField(label="Show sign-ins", required=False)

    def __init__(self, *args: Any, actions: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        action_field = self.fields["action"]
        assert isinstance(action_field, forms.ChoiceField)
        named = sorted(((code, action_name(code)) for code in actions), key=lambda choice: choice[1])
        action_field.choices = [("", "Any action"), *named]

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
        elif not data.get("sign_ins"):
            events = events.exclude(action__in=SIGN_INS)
        # Whole days in the viewer's time zone (activated by mailadmin.timezones).
        zone = timezone.get_current_timezone()
        if data.get("since"):
            events = events.filter(created_at__gte=datetime.combine(data["since"], time.min, tzinfo=zone))
        if data.get("until"):
            end = datetime.combine(data["until"] + timedelta(days=1), time.min, tzinfo=zone)
            events = events.filter(created_at__lt=end)
        return events

    def export_query(self) -> str:
        """The query string of this view's CSV export (the same filters, no page)."""
        if not self.is_bound or not self.is_valid():
            return ""
        return urlencode({name: value for name, value in self.data.items() if name in self.fields and value})

    def describe(self) -> str:
        """The filters in words, for the audit event of an export."""
        parts = []
        for name, field in self.fields.items():
            value = self.cleaned_data.get(name)
            if name == "sign_ins":
                parts.append("sign-ins included" if value else "")
            elif value:
                parts.append(f"{field.label}: {action_name(value) if name == 'action' else value}")
        return "; ".join(part for part in parts if part) or "everything except sign-ins"
