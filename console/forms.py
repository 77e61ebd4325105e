"""The staff console's forms that need more than the directory: a new mailbox must not take an
address an alias, a deleted alias's tombstone or another mailbox holds."""

import re

from django import forms
from django.conf import settings
from django.contrib.auth.models import User

from accounts import directory
from accounts.directory import DirectoryUnavailable
from accounts.forms import UNAVAILABLE, NewPasswordFields
from aliases.models import Alias, AliasTombstone, Domain
from mailadmin.form_checks import reject_control_characters

# A person's name for the directory: letters of any script, spaces and a few marks.
NAME_PATTERN = re.compile(r"[^\W\d_](?:[^\W_]|[ .'\-])*")
# Mailbox addresses the admin may create: plain ASCII local parts only (Postfix map keys).
MAILBOX_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9])?@[a-z0-9.-]{1,253}")


def mailbox_domains() -> set[str]:
    return {settings.MAIL_DOMAIN, *Domain.objects.filter(is_alias_domain=False).values_list("name", flat=True)}


def address_in_use(address: str) -> bool:
    """A mailbox, an alias or a deleted alias's tombstone already holds this address."""
    local, _, domain = address.partition("@")
    if Alias.objects.filter(local_part__iexact=local, domain__name__iexact=domain).exists():
        return True
    if AliasTombstone.objects.filter(address__iexact=address).exists():
        return True
    return directory.mail_exists(address)


class CreateUserForm(NewPasswordFields):
    uid = forms.CharField(
        label="User name (uid)",
        max_length=64,
        help_text="Lower-case letters, digits, dot, hyphen, underscore; starts with a letter.",
    )
    name = forms.CharField(label="Full name", max_length=100)
    mail = forms.CharField(label="Mailbox address", max_length=254)
    # The password's similarity check reads the other fields, so they are cleaned first.
    field_order = ["uid", "name", "mail", "new_password", "new_password_again"]

    def password_user(self) -> User:
        # For the similarity check against uid, name and address.
        return User(
            username=self.cleaned_data.get("uid", ""),
            first_name=self.cleaned_data.get("name", ""),
            email=self.cleaned_data.get("mail", ""),
        )

    def clean_uid(self) -> str:
        uid: str = self.cleaned_data["uid"]
        if not directory.UID_PATTERN.fullmatch(uid):
            raise forms.ValidationError(
                "Use lower-case letters, digits, dot, hyphen or underscore, starting with a letter."
            )
        try:
            taken = directory.get_user(uid) is not None
        except DirectoryUnavailable:
            raise forms.ValidationError(UNAVAILABLE) from None
        if taken:
            raise forms.ValidationError("A user with this uid already exists.")
        return uid

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        reject_control_characters(self.cleaned_data["name"])
        if not NAME_PATTERN.fullmatch(name):
            raise forms.ValidationError("Use letters, spaces, dots, hyphens and apostrophes only.")
        return name

    def clean_mail(self) -> str:
        raw: str = self.cleaned_data["mail"]
        reject_control_characters(raw)
        address = raw.lower()
        if not MAILBOX_PATTERN.fullmatch(address) or ".." in address:
            raise forms.ValidationError("Enter a plain mailbox address such as jane.doe@example.org.")
        if address.partition("@")[2] not in mailbox_domains():
            raise forms.ValidationError(f"Mailboxes live in {', '.join(sorted(mailbox_domains()))}.")
        try:
            if address_in_use(address):
                raise forms.ValidationError("This address is already a mailbox or an alias.")
        except DirectoryUnavailable:
            raise forms.ValidationError(UNAVAILABLE) from None
        return address
