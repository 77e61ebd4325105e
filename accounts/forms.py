from typing import Any

from django import forms
from django.contrib.auth import authenticate, password_validation
from django.contrib.auth.models import User
from django.http import HttpRequest

from accounts.backends import MAX_PASSWORD_LENGTH
from accounts.cram_md5 import verify_cram_md5
from accounts.directory import DirectoryUnavailable, password_hash
from accounts.models import SignInFailure
from audit.models import client_address

UNAVAILABLE = "The directory is not answering right now. Nothing was changed; please try again in a minute."


def _reject_control_characters(value: str) -> None:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise forms.ValidationError("Control characters are not allowed.")


class SignInForm(forms.Form):
    username = forms.CharField(label="User name", max_length=64, strip=True)
    password = forms.CharField(
        label="Password", max_length=MAX_PASSWORD_LENGTH, strip=False, widget=forms.PasswordInput
    )

    error_messages = {
        "invalid": "That user name and password do not match. Both are case-sensitive.",
        "throttled": "Too many failed sign-ins from this account or address. Wait a while and try again.",
    }

    def __init__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request = request
        self.user: User | None = None
        self.fields["username"].widget.attrs.update(autocomplete="username", autofocus=True)
        self.fields["password"].widget.attrs.update(autocomplete="current-password")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        username = cleaned.get("username")
        password = cleaned.get("password")
        if not username or not password:
            return cleaned
        address = client_address(self.request)
        if SignInFailure.is_throttled(username, address):
            raise forms.ValidationError(self.error_messages["throttled"], code="throttled")
        try:
            self.user = authenticate(self.request, username=username, password=password)
        except DirectoryUnavailable:
            raise forms.ValidationError(UNAVAILABLE, code="unavailable") from None
        if self.user is None:
            SignInFailure.record(username, address)
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return cleaned


class PasswordChangeForm(forms.Form):
    current_password = forms.CharField(
        label="Current password",
        max_length=MAX_PASSWORD_LENGTH,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    new_password = forms.CharField(
        label="New password",
        max_length=MAX_PASSWORD_LENGTH,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    new_password_again = forms.CharField(
        label="New password again",
        max_length=MAX_PASSWORD_LENGTH,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_current_password(self) -> str:
        password: str = self.cleaned_data["current_password"]
        try:
            stored = password_hash(self.user.get_username())
        except DirectoryUnavailable:
            raise forms.ValidationError(UNAVAILABLE) from None
        if stored is None or not verify_cram_md5(password, stored):
            raise forms.ValidationError("This is not your current password.")
        return password

    def clean_new_password(self) -> str:
        password: str = self.cleaned_data["new_password"]
        _reject_control_characters(password)
        password_validation.validate_password(password, self.user)
        return password

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        new, again = cleaned.get("new_password"), cleaned.get("new_password_again")
        if new and again is not None and new != again:
            self.add_error("new_password_again", "The two new passwords differ.")
        return cleaned
