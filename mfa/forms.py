import re
import unicodedata
from typing import Any

from django import forms

from mfa import totp

# What people type: six digits, or a recovery code with or without its hyphens and spaces.
CODE_MAX_LENGTH = 40
RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32: no i, l, o, u
RECOVERY_LENGTH = 16
_LOOKALIKES = str.maketrans({"o": "0", "i": "1", "l": "1"})
_SEPARATORS = re.compile(r"[\s-]+")


def normalised_recovery_code(value: str) -> str | None:
    text = _SEPARATORS.sub("", value.lower()).translate(_LOOKALIKES)
    if len(text) != RECOVERY_LENGTH or any(c not in RECOVERY_ALPHABET for c in text):
        return None
    return text


class CodeForm(forms.Form):
    """A code from the authenticator app, or a recovery code."""

    code = forms.CharField(label="Code", max_length=CODE_MAX_LENGTH, strip=True)

    def __init__(self, *args: Any, recovery: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recovery = recovery
        self.fields["code"].widget.attrs.update(autocomplete="one-time-code", autofocus=True, spellcheck="false")
        if recovery:
            self.fields[
                "code"
            ].help_text = "The six digits your authenticator app shows, or one of your recovery codes."
        else:
            self.fields["code"].help_text = "The six digits your authenticator app shows now."
            self.fields["code"].widget.attrs.update(inputmode="numeric")

    def clean_code(self) -> str:
        raw: str = self.cleaned_data["code"]
        digits = _SEPARATORS.sub("", raw)
        if len(digits) == totp.DIGITS and digits.isascii() and digits.isdigit():
            self.kind = "totp"
            return digits
        if self.recovery:
            recovery = normalised_recovery_code(raw)
            if recovery is not None:
                self.kind = "recovery code"
                return recovery
            raise forms.ValidationError("Enter the six digits from your app, or a recovery code (16 characters).")
        raise forms.ValidationError("Enter the six digits your app shows.")


class PasskeyAnswerForm(forms.Form):
    """What static/js/passkeys.js puts in the form after the browser's passkey prompt."""

    credential = forms.CharField(widget=forms.HiddenInput, max_length=64 * 1024, strip=False)


class NewPasskeyForm(PasskeyAnswerForm):
    name = forms.CharField(
        label="Name",
        max_length=64,
        help_text="So you can tell your passkeys apart, e.g. “YubiKey on my keyring” or “work laptop”.",
    )
    field_order = ["name", "credential"]

    def __init__(self, *args: Any, taken: set[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.taken = taken or set()
        self.fields["credential"].required = False  # checked in clean(): the error belongs to the form

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        # No control, format (bidi overrides, zero-width) or line-separator characters.
        if not name or any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
            raise forms.ValidationError("Use letters, digits, spaces and punctuation only.")
        if name.casefold() in {t.casefold() for t in self.taken}:
            raise forms.ValidationError("You already have a passkey of this name.")
        return name

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not cleaned.get("credential"):
            raise forms.ValidationError(
                "No passkey was created. This needs JavaScript and a browser that supports passkeys."
            )
        return cleaned
