import re
from collections.abc import Collection
from typing import Any

from django import forms
from django.db.models import Q, QuerySet

from handover.forms import SingleLineField
from trail.models import Delivery

QUEUE_ID = re.compile(r"[0-9A-Za-z]{5,20}\Z")
# What Postfix logs between < and >: no whitespace, no angle brackets, one @ with text on both sides.
ADDRESS = re.compile(r"[^\s<>@]{1,64}@[^\s<>@]{1,255}\Z")


class TrailSearchForm(forms.Form):
    """A GET form: every field optional. `own` limits the addresses an end user may ask about."""

    q = SingleLineField(
        label="Address or queue id",
        required=False,
        max_length=320,
        help_text="An envelope sender or recipient (before or after aliasing), or a Postfix queue id.",
    )
    status = forms.ChoiceField(label="Status", required=False, choices=[("", "Any status"), *Delivery.Status.choices])
    since = forms.DateTimeField(
        label="From", required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    until = forms.DateTimeField(
        label="To", required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )

    def __init__(
        self, *args: Any, own: Collection[str] | None = None, own_domains: Collection[str] = (), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.own, self.own_domains = own, own_domains

    def clean_q(self) -> str:
        value = str(self.cleaned_data["q"]).strip()
        if not value:
            return ""
        if "@" not in value and QUEUE_ID.match(value):
            return value.upper() if re.fullmatch(r"[0-9a-fA-F]+", value) and len(value) <= 12 else value
        if not ADDRESS.match(value):
            raise forms.ValidationError("Give one mail address (name@domain) or a queue id.", code="invalid")
        value = value.lower()
        if self.own is not None and value not in self.own and value.rpartition("@")[2] not in self.own_domains:
            raise forms.ValidationError(
                "You can see the mail of your own addresses only: your mailbox and your aliases.", code="not_own"
            )
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", "The end is before the start.")
        return cleaned

    def filter(self, records: QuerySet[Delivery]) -> QuerySet[Delivery]:
        data = self.cleaned_data
        query = data.get("q")
        if query and "@" in query:
            records = records.filter(Q(sender=query) | Q(recipient=query) | Q(original_recipient=query))
        elif query:
            records = records.filter(queue_id=query)
        if data.get("status"):
            records = records.filter(status=data["status"])
        if data.get("since"):
            records = records.filter(logged_at__gte=data["since"])
        if data.get("until"):
            records = records.filter(logged_at__lte=data["until"])
        return records
