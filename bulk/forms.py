"""The import's forms. A row is checked by the same forms as the web pages: a users row by the
admin's "create user" form, an aliases row by the custom or per-site alias form (as an admin
makes it); the forms here only add what a file has and a page has not."""

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile

from accounts.cram_md5 import is_cram_md5
from aliases.forms import AliasCreateForm, CustomAliasForm, SiteAliasForm
from aliases.models import Domain
from bulk import csvfiles
from bulk.models import ImportJob
from console.forms import CreateUserForm

ENABLED_VALUES = {"": True, "yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


class ImportForm(forms.Form):
    kind = forms.ChoiceField(
        label="The file holds",
        choices=[
            (ImportJob.Kind.USERS, "Users: new mailboxes in the directory"),
            (ImportJob.Kind.ALIASES, "Aliases for people who are in the directory"),
        ],
        widget=forms.RadioSelect,
    )
    file = forms.FileField(
        label="CSV file",
        help_text="UTF-8, comma-separated, with a header line; see the formats below. "
        "First comes a dry run: nothing changes until you import.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["file"].widget.attrs["accept"] = ".csv,text/csv"
        self.text = ""
        self.rows: list[csvfiles.Row] = []

    def clean_file(self) -> UploadedFile:
        upload: UploadedFile = self.cleaned_data["file"]
        limit = settings.BULK_MAX_BYTES
        if upload.size is None or upload.size > limit:
            raise forms.ValidationError(
                f"The file is larger than {limit // 1_000_000} MB. Split it into smaller files."
            )
        try:
            self.text = csvfiles.decode(upload.read(limit + 1))
        except csvfiles.CsvRefused as exc:
            raise forms.ValidationError(str(exc)) from None
        return upload

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = cleaned.get("kind")
        if kind and self.text and not self.errors:
            try:
                self.rows = csvfiles.parse(self.text, csvfiles.LAYOUTS[kind], settings.BULK_MAX_ROWS)
            except csvfiles.CsvRefused as exc:
                self.add_error("file", str(exc))
        return cleaned


class ExportForm(forms.Form):
    what = forms.ChoiceField(
        label="What to export",
        choices=[("users", "Users (from the directory)"), ("aliases", "Aliases")],
        widget=forms.RadioSelect,
    )
    password_hashes = forms.BooleanField(
        label="Include the password hashes (password-equivalent: anyone holding the file can read mail)",
        required=False,
        help_text="Users only. For moving the users to another server; keep the file like a password.",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("password_hashes") and cleaned.get("what") != "users":
            self.add_error("password_hashes", "Only the users export has password hashes.")
        return cleaned


class UserRowForm(CreateUserForm):
    """A users row: the "create user" form with the password generated here, or given as the
    `{CRAM-MD5}` value of an export instead."""

    password_equivalent_hash = forms.CharField(required=False, max_length=200, strip=True)

    def __init__(self, values: dict[str, str], generated_password: str) -> None:
        data = dict(values)
        if not values.get("password_equivalent_hash", "").strip():
            data.update(new_password=generated_password, new_password_again=generated_password)
        super().__init__(data)
        if "new_password" not in data:
            del self.fields["new_password"], self.fields["new_password_again"]

    def clean_password_equivalent_hash(self) -> str:
        value: str = self.cleaned_data["password_equivalent_hash"]
        if value and not is_cram_md5(value):
            raise forms.ValidationError(
                "Give a {CRAM-MD5} value as the export has it ({CRAM-MD5} and 64 hex digits), "
                "or leave it empty for a generated password."
            )
        return value


class AliasRowForm(forms.Form):
    """What an aliases row has beyond the alias forms: whose it is, the whole address, whether
    it is switched on."""

    owner = forms.CharField(max_length=64)
    address = forms.CharField(max_length=320, strip=False)
    enabled = forms.CharField(max_length=5, required=False)

    def clean_address(self) -> str:
        address: str = self.cleaned_data["address"]
        if address.count("@") != 1:
            raise forms.ValidationError("Give the whole address, name@domain.")
        return address

    def clean_enabled(self) -> bool:
        value = self.cleaned_data["enabled"].strip().lower()
        if value not in ENABLED_VALUES:
            raise forms.ValidationError("Say yes or no (empty is yes).")
        return ENABLED_VALUES[value]


def alias_form(owner: User, domain: Domain, values: dict[str, str]) -> AliasCreateForm:
    """The web page's form for this row, as an admin would fill it in for the owner."""
    local_part = values["address"].rpartition("@")[0]
    data = {
        "local_part": local_part,
        "domain": str(domain.pk),
        "label": values["note"],
        "expires_on": values["expires_on"],
    }
    if values["site"].strip():
        return SiteAliasForm(owner, {**data, "site": values["site"]}, is_admin=True)
    return CustomAliasForm(owner, data, is_admin=True)
