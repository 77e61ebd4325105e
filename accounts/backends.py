"""Sign-in against OpenLDAP where userPassword holds Dovecot {CRAM-MD5} values.

slapd cannot check a {CRAM-MD5} value on a simple bind, so the backend reads the entry as the
service account (accounts/directory.py) and verifies the password itself. The Django user row
(created at the first sign-in, without a usable password) mirrors the entry's names and mail,
and its groups mirror the LDAP groups that list the person (accounts.roles reads roles there).
"""

from typing import Any

from django.conf import settings
from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.models import Group, User
from django.db.models import Exists, IntegerField, OuterRef, QuerySet
from django.http import HttpRequest

from accounts import directory
from accounts.cram_md5 import verify_cram_md5
from accounts.models import SenderSuspension
from mailadmin import compiled_sql
from mailadmin.compiled_sql import Slot

MAX_PASSWORD_LENGTH = 1024
STAFF_GROUPS = ("LDAP_ADMIN_GROUP_DN", "LDAP_HELPDESK_GROUP_DN")  # the settings naming the groups roles rest on


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
        """The signed-in user of a request, with what every page asks next read in the same
        query: the staff groups they are in (`staff_groups`, for accounts.roles.role_of) and
        whether their sending is suspended (`sending_suspended`, for the banner). Both are read
        from the database on every request, as the two queries of their own were."""
        names = tuple(group_name(getattr(settings, setting)) for setting in STAFF_GROUPS)
        # Compiled once (mailadmin/compiled_sql.py): building and compiling the three
        # subqueries cost more than the two queries they replace.
        found = compiled_sql.run(User, ("signed-in user", names), lambda: _with_standing(names), user=user_id)
        if not found:
            return None
        row = found[0]
        user = User.from_db(User.objects.db, USER_FIELDS, [row[name] for name in USER_FIELDS])
        user.staff_groups = frozenset(  # type: ignore[attr-defined]
            name for n, name in enumerate(names) if row[f"in_staff_group_{n}"]
        )
        user.sending_suspended = row["sending_suspended"]  # type: ignore[attr-defined]
        return user


def group_name(group_dn: str) -> str:
    """The Django group the sign-in backend mirrors for an LDAP group: its cn."""
    return group_dn.split(",", 1)[0].split("=", 1)[1]


USER_FIELDS = [field.attname for field in User._meta.concrete_fields]


def _with_standing(staff_groups: tuple[str, ...]) -> QuerySet[User, dict[str, Any]]:
    memberships = User.groups.through.objects.filter(user=OuterRef("pk"))
    staff = {f"in_staff_group_{n}": Exists(memberships.filter(group__name=name)) for n, name in enumerate(staff_groups)}
    suspended = Exists(SenderSuspension.objects.active().filter(uid=OuterRef("username")))
    return (
        User.objects.filter(pk=Slot("user", IntegerField()))
        .annotate(**staff, sending_suspended=suspended)
        .values(*USER_FIELDS, *staff, "sending_suspended")
    )


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
