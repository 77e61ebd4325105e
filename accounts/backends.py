"""Sign-in against OpenLDAP where userPassword holds Dovecot {CRAM-MD5} values.

slapd cannot check a {CRAM-MD5} value on a simple bind, so the backend reads the entry as the
service account (accounts/directory.py) and verifies the password itself. The Django user row
(created at the first sign-in, without a usable password) mirrors the entry's names and mail,
and its groups mirror the LDAP groups that list the person (accounts.roles reads roles there).
"""

from typing import Any

from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.models import Group, User
from django.http import HttpRequest

from accounts import directory
from accounts.cram_md5 import verify_cram_md5

MAX_PASSWORD_LENGTH = 1024


class CramMD5LDAPBackend(BaseBackend):
    def authenticate(  # type: ignore[override]
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> User | None:
        """The user, or None; DirectoryUnavailable when the directory does not answer."""
        if not username or not password or len(password) > MAX_PASSWORD_LENGTH:
            return None
        uid = username
        if not directory.UID_PATTERN.match(uid) or "\0" in password:
            return None
        entry = directory.sign_in_entry(uid)
        if entry is None:
            return None
        # Check every value (no early exit) so timing says nothing about which matched.
        matches = [verify_cram_md5(password, value) for value in entry.passwords]
        if not any(matches):
            return None
        return _mirrored_user(uid, entry)

    def get_user(self, user_id: int) -> User | None:
        return User.objects.filter(pk=user_id).first()


def _mirrored_user(uid: str, entry: directory.SignInEntry) -> User:
    user = User.objects.filter(username__iexact=uid).first()
    if user is None:
        user = User(username=uid.lower())
        user.set_unusable_password()
    for field, value in (("first_name", entry.given_name), ("last_name", entry.sn), ("email", entry.mail)):
        if value is not None:  # an attribute the entry lacks leaves the field as it was
            setattr(user, field, value)
    user.save()
    if set(user.groups.values_list("name", flat=True)) != entry.group_names:
        user.groups.set([Group.objects.get_or_create(name=name)[0] for name in sorted(entry.group_names)])
    return user
