import unicodedata
from datetime import date, datetime, time

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from api.models import ApiToken

MAX_TOKEN_DAYS = 3660


def _single_line_text(value: str) -> str:
    # No control (line breaks included), format (bidi overrides, zero-width) or line-separator characters.
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value):
        raise ValidationError("Use letters, digits, spaces and punctuation only, on one line.", code="control")
    return value.strip()


class TokenCreateForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=100,
        help_text="Where you use it, so you can tell your tokens apart, e.g. “Bitwarden on my laptop”.",
    )
    scope = forms.ChoiceField(
        label="May",
        choices=[(ApiToken.Scope.MANAGE, "read and make aliases"), (ApiToken.Scope.READ, "only read aliases")],
        initial=ApiToken.Scope.MANAGE,
        widget=forms.RadioSelect,
        help_text="A password manager that makes aliases needs “read and make aliases”.",
    )
    expires_on = forms.DateField(
        label="Stops working on (optional)",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="From this day on the token is refused. Leave empty for a token that works until you revoke it.",
    )

    def clean_name(self) -> str:
        name = _single_line_text(self.cleaned_data["name"])
        if not name:
            raise ValidationError("Give the token a name.")
        return name

    def clean_expires_on(self) -> date | None:
        day: date | None = self.cleaned_data.get("expires_on")
        if day is None:
            return None
        today = timezone.localdate()
        if day <= today:
            raise ValidationError("Choose a day after today.")
        if (day - today).days > MAX_TOKEN_DAYS:
            raise ValidationError("Choose a day within ten years.")
        return day

    @property
    def expires_at(self) -> datetime | None:
        day = self.cleaned_data.get("expires_on")
        return timezone.make_aware(datetime.combine(day, time.min)) if day else None


class TokenSearchForm(forms.Form):
    q = forms.CharField(label="Person (user name)", max_length=64, required=False)

    def clean_q(self) -> str:
        return _single_line_text(self.cleaned_data["q"])

    @property
    def query(self) -> str:
        return str(self.cleaned_data.get("q") or "") if self.is_valid() else ""
