import re

from django import forms
from django.core.exceptions import ValidationError

from activity.models import SenderBlock
from aliases.addresses import MAX_ADDRESS, normalize_domain

# A sender's local part as mail from outside may carry it (RFC 5322 atext and dots), not only
# the strict names this site hands out.
_SENDER_LOCAL_PART = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}\Z")


def normalize_sender(value: str) -> str:
    """A sender address, lower-case; a clear error for anything else."""
    address = value.strip().lower()
    local, at, domain = address.rpartition("@")
    if not at or not local:
        raise ValidationError("Enter a sender address (name@domain).", code="invalid")
    if len(address) > MAX_ADDRESS:
        raise ValidationError(f"An address may be at most {MAX_ADDRESS} characters long.", code="length")
    if not local.isascii() or not _SENDER_LOCAL_PART.match(local):
        raise ValidationError("The part before @ has characters a sender address cannot have.", code="invalid")
    return f"{local}@{normalize_domain(domain)}"


SCOPE_CHOICES = [
    (SenderBlock.Scope.ALIAS.value, "this alias"),
    (SenderBlock.Scope.ACCOUNT.value, "all my addresses"),
    (SenderBlock.Scope.ORGANISATION.value, "everyone here"),
]


class BlockForm(forms.Form):
    """Block a sender address, or every sender at a domain (an address given for a domain
    block stands for its domain)."""

    KINDS = [("sender", "this sender"), ("domain", "everyone at this domain")]
    sender = forms.CharField(label="Sender address or domain", max_length=320)
    kind = forms.ChoiceField(label="Block", choices=KINDS, initial="sender")
    scope = forms.ChoiceField(
        label="For",
        choices=SCOPE_CHOICES,
    )

    def __init__(self, data: object = None, *, scopes: tuple[str, ...]) -> None:
        """`scopes`: the scopes this page offers (a posted other one is refused)."""
        super().__init__(data)  # type: ignore[arg-type]
        field = self.fields["scope"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(value, label) for value, label in SCOPE_CHOICES if value in scopes]
        field.initial = scopes[0]
        if len(scopes) == 1:
            field.widget = forms.HiddenInput()

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if "scope" in self.errors and isinstance(self.fields["scope"].widget, forms.HiddenInput):
            self.add_error(None, "This page cannot make that kind of block.")  # a hidden field shows no error
        value, kind = str(data.get("sender") or ""), data.get("kind")
        if not value or kind is None:
            return data
        try:
            if kind == "domain" and "@" in value:
                data["value"] = normalize_sender(value).rpartition("@")[2]
            elif kind == "domain":
                data["value"] = normalize_domain(value.strip())
            else:
                data["value"] = normalize_sender(value)
        except ValidationError as exc:
            self.add_error("sender", exc)
        return data

    @property
    def is_domain(self) -> bool:
        return self.cleaned_data["kind"] == "domain"
