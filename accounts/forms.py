from datetime import datetime
from pathlib import Path
from typing import Any

from django import forms
from django.contrib.auth import authenticate, password_validation
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.utils import timezone

from accounts import directory, ldap_setup, throttle
from accounts.backends import MAX_PASSWORD_LENGTH
from accounts.cram_md5 import verify_cram_md5
from accounts.directory import DirectoryUnavailable, password_hash
from audit.models import client_address
from mailadmin import dates
from mailadmin.form_checks import read_secret_file, reject_control_characters

UNAVAILABLE = "The directory is not answering right now. Nothing was changed; please try again in a minute."


class SignInForm(forms.Form):
    username = forms.CharField(label="User name or mail address", max_length=254, strip=True)
    password = forms.CharField(
        label="Password", max_length=MAX_PASSWORD_LENGTH, strip=False, widget=forms.PasswordInput
    )

    error_messages = {
        "invalid": "That user name (or address) and password do not match. The password is case-sensitive.",
        "throttled": "Too many failed sign-ins from this account or address. Wait a while and try again.",
        "shared": "Several accounts have this mail address. Sign in with your user name instead.",
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
        if "@" in username:
            username = self._uid_of_address(username)
        address = client_address(self.request)
        slot = throttle.claim(username, address)
        if slot is None:
            raise forms.ValidationError(self.error_messages["throttled"], code="throttled")
        try:
            self.user = authenticate(self.request, username=username, password=password)
        except DirectoryUnavailable:
            throttle.not_counted(slot)
            raise forms.ValidationError(UNAVAILABLE, code="unavailable") from None
        if self.user is None:
            throttle.failed(slot)
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        throttle.succeeded(slot, username, address)
        return cleaned

    def _uid_of_address(self, address: str) -> str:
        """The uid whose mailbox this is; an address nobody has is tried (and fails) as typed,
        so that it costs a throttled attempt like any wrong name."""
        reject_control_characters(address)
        try:
            uids = directory.users_with_mail(address)
        except DirectoryUnavailable:
            raise forms.ValidationError(UNAVAILABLE, code="unavailable") from None
        if len(uids) > 1:
            raise forms.ValidationError(self.error_messages["shared"], code="shared")
        return uids[0] if uids else address.lower()[:150]


# --- Directory administration and sender suspension -----------------------------------

REASON_MAX_LENGTH = 2000
# Deep pages cost a walk over every earlier entry; past this, refine the search.
DIRECTORY_MAX_PAGE = 40
# The staff user list pages with slapd's virtual list view: any page costs the same.
DIRECTORY_LIST_MAX_PAGE = 100_000


def _reject_control_characters_except_lines(value: str) -> None:
    if any((ord(c) < 32 and c not in "\n\t") or ord(c) == 127 or 0x80 <= ord(c) < 0xA0 for c in value):
        raise forms.ValidationError("Control characters are not allowed.")


class DirectorySearchForm(forms.Form):
    """The staff user list: search, filters, sort and page (a GET form: every field optional)."""

    SORTS = {
        "uid": (directory.UserSort.UID, False),
        "-uid": (directory.UserSort.UID, True),
        "name": (directory.UserSort.NAME, False),
        "-name": (directory.UserSort.NAME, True),
        "mail": (directory.UserSort.MAIL, False),
        "-mail": (directory.UserSort.MAIL, True),
    }

    q = forms.CharField(label="Name, uid or address", max_length=100, required=False, strip=True)
    role = forms.ChoiceField(
        label="Role",
        required=False,
        choices=[("", "Any role"), *((role.value, role.value.capitalize()) for role in directory.UserRole)],
    )
    state = forms.ChoiceField(
        label="State",
        required=False,
        choices=[("", "Any state"), *((state.value, state.value.capitalize()) for state in directory.UserState)],
    )
    sort = forms.ChoiceField(required=False, choices=[(key, key) for key in SORTS], widget=forms.HiddenInput)
    page = forms.IntegerField(min_value=1, max_value=DIRECTORY_LIST_MAX_PAGE, required=False, widget=forms.HiddenInput)

    def clean_q(self) -> str:
        value: str = self.cleaned_data["q"]
        reject_control_characters(value)
        return value

    def listing(self) -> dict[str, Any]:
        """The keyword arguments of console.people.people_page, from the cleaned data."""
        data = self.cleaned_data
        sort, descending = self.SORTS[data.get("sort") or "uid"]
        return {
            "role": directory.UserRole(data["role"]) if data.get("role") else None,
            "state": directory.UserState(data["state"]) if data.get("state") else None,
            "sort": sort,
            "descending": descending,
        }


class NewPasswordFields(forms.Form):
    new_password = forms.CharField(
        label="Password",
        max_length=MAX_PASSWORD_LENGTH,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    new_password_again = forms.CharField(
        label="Password again",
        max_length=MAX_PASSWORD_LENGTH,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def password_user(self) -> User:
        raise NotImplementedError

    def clean_new_password(self) -> str:
        password: str = self.cleaned_data["new_password"]
        reject_control_characters(password)
        password_validation.validate_password(password, self.password_user())
        return password

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        new, again = cleaned.get("new_password"), cleaned.get("new_password_again")
        if new and again is not None and new != again:
            self.add_error("new_password_again", "The two passwords differ.")
        return cleaned


class PasswordChangeForm(NewPasswordFields):
    current_password = forms.CharField(
        label="Current password",
        max_length=MAX_PASSWORD_LENGTH,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    field_order = ["current_password", "new_password", "new_password_again"]

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["new_password"].label = "New password"
        self.fields["new_password_again"].label = "New password again"

    def password_user(self) -> User:
        return self.user

    def clean_current_password(self) -> str:
        password: str = self.cleaned_data["current_password"]
        try:
            stored = password_hash(self.user.get_username())
        except DirectoryUnavailable:
            raise forms.ValidationError(UNAVAILABLE) from None
        if stored is None or not verify_cram_md5(password, stored):
            raise forms.ValidationError("This is not your current password.")
        return password


class ResetPasswordForm(NewPasswordFields):
    def __init__(self, person: directory.DirectoryUser, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.person = person

    def password_user(self) -> User:
        return User(username=self.person.uid, first_name=self.person.cn, email=self.person.mail)


class DisableAccountForm(forms.Form):
    reason = forms.CharField(label="Why (for the audit log)", max_length=500, widget=forms.Textarea(attrs={"rows": 3}))

    def clean_reason(self) -> str:
        reason: str = self.cleaned_data["reason"].replace("\r\n", "\n")
        _reject_control_characters_except_lines(reason)
        return reason


class SuspendForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Shown to the user and to staff. It is never part of the SMTP reply.",
    )
    until = dates.DateTimeField(
        label="Lift automatically at (optional)",
        required=False,
        help_text="In the time zone shown at the foot of the page. Empty: until an admin reinstates the user.",
    )
    tell = forms.BooleanField(
        label="Tell them by mail",
        required=False,
        help_text="The person gets a plain mail with the reason, the end and whom to contact; the admins get one too.",
    )

    def clean_reason(self) -> str:
        reason: str = self.cleaned_data["reason"].replace("\r\n", "\n").strip()
        _reject_control_characters_except_lines(reason)
        if not reason:
            raise forms.ValidationError("Give a reason.")
        return reason

    def clean_until(self) -> datetime | None:
        until: datetime | None = self.cleaned_data["until"]
        if until is not None and until <= timezone.now():
            raise forms.ValidationError("The end must be in the future.")
        return until


class LdapSetupForm(forms.Form):
    """manage.py ldap_setup: who binds to set the directory up, where service passwords live."""

    bind_dn = forms.CharField(max_length=1000)
    bind_password_file = forms.CharField(max_length=4096)
    password_dir = forms.CharField(max_length=4096)
    admin = forms.CharField(max_length=64, required=False, strip=False)
    acl_format = forms.ChoiceField(choices=[("ldif", "cn=config LDIF"), ("conf", "slapd.conf")])
    acl_database = forms.CharField(max_length=1000)
    acl_out = forms.CharField(max_length=4096, required=False)

    def clean_bind_dn(self) -> str:
        try:
            return ldap_setup.checked_dn(self.cleaned_data["bind_dn"], "the bind DN")
        except ldap_setup.SetupError as error:
            raise forms.ValidationError(str(error)) from None

    def clean_acl_database(self) -> str:
        try:
            return ldap_setup.checked_dn(self.cleaned_data["acl_database"], "the database DN")
        except ldap_setup.SetupError as error:
            raise forms.ValidationError(str(error)) from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "bind_password_file" in cleaned:
            try:
                cleaned["bind_password"] = read_secret_file(cleaned["bind_password_file"])
            except forms.ValidationError as error:
                self.add_error("bind_password_file", error)
        return cleaned

    def _absolute_path(self, name: str) -> Path | None:
        value = self.cleaned_data[name]
        if not value:
            return None
        reject_control_characters(value)
        if not Path(value).is_absolute():
            raise forms.ValidationError("Give an absolute path.")
        return Path(value)

    def clean_password_dir(self) -> Path | None:
        return self._absolute_path("password_dir")

    def clean_acl_out(self) -> Path | None:
        return self._absolute_path("acl_out")

    def clean_admin(self) -> str:
        uid = self.cleaned_data["admin"]
        if uid and not directory.UID_PATTERN.fullmatch(uid):
            raise forms.ValidationError("Not a user name: a lower-case letter, then letters, digits, '.', '_' or '-'.")
        return uid
