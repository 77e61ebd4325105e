from typing import Any

from django import forms
from django.urls import reverse
from django.utils import timezone

from mailadmin import dates
from outofoffice.models import VacationReply
from outofoffice.rules import ADDRESS_PATTERN, MAX_HEADER_BYTES


def reject_line_breaks(value: str) -> None:
    # These end up in mail headers: a CR or LF would start a header of the sender's choosing.
    if any(ord(c) < 32 or ord(c) == 127 or c in "\u2028\u2029\x85" for c in value):
        raise forms.ValidationError("Line breaks and control characters are not allowed here.")


def reject_control_characters(value: str) -> None:
    # Body text: line breaks and tabs are fine, other control characters are not.
    if any((ord(c) < 32 and c not in "\r\n\t") or ord(c) == 127 for c in value):
        raise forms.ValidationError("Control characters are not allowed.")


class VacationForm(forms.ModelForm):
    class Meta:
        model = VacationReply
        fields = ["enabled", "starts_at", "ends_at", "subject", "body", "internal_body", "delegate", "interval_days"]
        labels = {
            "enabled": "Send vacation replies",
            "starts_at": "From",
            "ends_at": "Until",
            "body": "Reply text",
            "internal_body": "Reply text for colleagues (optional)",
            "delegate": "Delegate (optional)",
            "interval_days": "Reply to the same sender at most once every … days",
        }
        help_texts = {
            "subject": "Replies are sent with the subject “Auto: ” followed by this.",
            "internal_body": "Sent instead of the reply text to senders inside the organisation. "
            "You may link your handover note here.",
            "delegate": "Shown in the reply as “In urgent matters please contact: …”, e.g. a name and address.",
            "interval_days": "At least 1, at most 365. Default 7.",
        }
        field_classes = {"starts_at": dates.DateTimeField, "ends_at": dates.DateTimeField}
        widgets = {
            "body": forms.Textarea(attrs={"rows": 8}),
            "internal_body": forms.Textarea(attrs={"rows": 6}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Typed and shown in the viewer's active time zone (the browser's, else TIME_ZONE).
        zone = timezone.get_current_timezone_name()
        help_texts = {
            "starts_at": f"Time zone {zone}. Empty: from now on.",
            "ends_at": f"Time zone {zone}. Replies stop exactly then. Empty: until switched off.",
        }
        for name, help_text in help_texts.items():
            field = self.fields[name]
            field.help_text = help_text
        self.fields["interval_days"].widget.attrs.update(min=1, max=365)

    def clean_subject(self) -> str:
        subject: str = self.cleaned_data["subject"].strip()
        reject_line_breaks(subject)
        return subject

    def clean_delegate(self) -> str:
        delegate: str = self.cleaned_data["delegate"].strip()
        reject_line_breaks(delegate)
        return delegate

    def clean_body(self) -> str:
        body: str = self.cleaned_data["body"]
        reject_control_characters(body)
        # Handover notes are for colleagues: the reply to strangers never points at one.
        if reverse("handover:mine") in body:
            raise forms.ValidationError(
                "Do not link a handover note here: this text goes to anyone. Use the text for colleagues."
            )
        return body.replace("\r\n", "\n").strip()

    def clean_internal_body(self) -> str:
        body: str = self.cleaned_data["internal_body"]
        reject_control_characters(body)
        return body.replace("\r\n", "\n").strip()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        starts, ends = cleaned.get("starts_at"), cleaned.get("ends_at")
        if starts and ends and ends <= starts:
            self.add_error("ends_at", "The end must be after the start.")
        if cleaned.get("enabled"):
            if not cleaned.get("subject"):
                self.add_error("subject", "A reply needs a subject.")
            if not cleaned.get("body"):
                self.add_error("body", "A reply needs a text.")
        return cleaned


class PreviewForm(forms.Form):
    sender = forms.CharField(
        label="Who is writing?",
        max_length=320,
        required=False,
        help_text="Their mail address, e.g. someone@example.com. Leave it empty to try a bounce "
        "(a “could not deliver” message from a mail server).",
    )
    headers = forms.CharField(
        label="Header lines of their message (optional)",
        max_length=MAX_HEADER_BYTES // 4,
        required=False,
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false"}),
        help_text="For a closer look: paste the header lines of a real message, e.g. To:, Subject:, "
        "List-Id:, Auto-Submitted:. Empty: an ordinary message addressed to this mailbox.",
    )

    def clean_sender(self) -> str:
        sender: str = self.cleaned_data["sender"].strip().strip("<>").strip().lower()
        reject_line_breaks(sender)
        if sender and not ADDRESS_PATTERN.fullmatch(sender):
            raise forms.ValidationError("Enter a mail address such as someone@example.com, or leave it empty.")
        return sender

    def clean_headers(self) -> str:
        headers: str = self.cleaned_data["headers"]
        reject_control_characters(headers)
        return headers


class ReturnToForm(forms.Form):
    """Where a staff edit of someone's vacation returns to: nowhere special, or the one page
    that embeds the form (the person's directory page), never an address the client picks."""

    next = forms.CharField(required=False, max_length=300)

    def __init__(self, *args: Any, allowed: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allowed = allowed

    def clean_next(self) -> str:
        value: str = self.cleaned_data["next"]
        if value not in ("", self.allowed):
            raise forms.ValidationError("This form was sent from a page it cannot return to. Nothing was saved.")
        return value


class ConfirmClearForm(forms.Form):
    """The second step of clearing a vacation reply: only the confirmation page posts confirm=yes,
    so a stray click on the first button (or a replayed POST without it) clears nothing."""

    confirm = forms.ChoiceField(choices=[("yes", "yes")], widget=forms.HiddenInput)


class UserSearchForm(forms.Form):
    q = forms.CharField(
        label="Find a user", max_length=100, required=False, help_text="Part of a name, uid or address."
    )

    def clean_q(self) -> str:
        query: str = self.cleaned_data["q"].strip()
        reject_line_breaks(query)
        return query
