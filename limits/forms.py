from typing import Any

from django import forms

from accounts import directory
from aliases.addresses import normalize_domain
from limits.models import SendingLimit

LIMIT_MAX = 1_000_000


class SendingLimitForm(forms.ModelForm):
    class Meta:
        model = SendingLimit
        fields = [
            "scope",
            "name",
            "messages_per_hour",
            "recipients_per_hour",
            "recipients_per_day",
            "recipients_per_message",
        ]
        labels = {"name": "Domain or uid"}
        help_texts = {"messages_per_hour": "Soft limits; empty keeps the wider one. The hard limit is a multiple."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("messages_per_hour", "recipients_per_hour", "recipients_per_day", "recipients_per_message"):
            field = self.fields[name]
            self.fields[name] = forms.IntegerField(
                label=field.label, required=False, min_value=1, max_value=LIMIT_MAX, help_text=field.help_text
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        scope, name = cleaned.get("scope"), cleaned.get("name", "")
        if not name or not scope:
            return cleaned
        name = name.strip()
        if scope == SendingLimit.DOMAIN:
            try:
                cleaned["name"] = normalize_domain(name)
            except forms.ValidationError as exc:
                self.add_error("name", exc)
        elif not directory.UID_PATTERN.fullmatch(name):
            self.add_error("name", "Give a uid as the directory has it (letters, digits, . _ -).")
        else:
            try:
                if directory.get_user(name) is None:
                    self.add_error("name", f"There is no user {name} in the directory.")
            except directory.DirectoryUnavailable:
                self.add_error(None, "The directory is not answering, so nothing was changed. Try again shortly.")
            cleaned["name"] = name
        values = [cleaned.get(f) for f in ("messages_per_hour", "recipients_per_hour", "recipients_per_day")]
        if all(v is None for v in values) and cleaned.get("recipients_per_message") is None:
            self.add_error(None, "Set at least one limit.")
        return cleaned

    def validate_unique(self) -> None:
        try:
            self.instance.validate_constraints()
        except forms.ValidationError:
            self.add_error("name", "There is a limit for this already; change that one.")
