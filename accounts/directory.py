"""The one place mailadmin talks to OpenLDAP (through the app's service account).

Every function opens a connection, does its work and closes it; ldap3 errors become
DirectoryUnavailable (slapd down or unreachable) or DirectoryError (refused).
"""

import hashlib
import hmac
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import ldap3
from django.conf import settings
from ldap3.core.exceptions import LDAPCommunicationError, LDAPException, LDAPSocketOpenError
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from accounts.cram_md5 import cram_md5_hash

# uid: what the sign-in form, the admin "create user" form and the URLs accept. \Z, not $:
# "$" also matches before a final newline, so "alice\n" would pass for alice.
UID_REGEX = r"[a-z][a-z0-9._-]{0,63}"
UID_PATTERN = re.compile(rf"\A{UID_REGEX}\Z")
USER_ATTRIBUTES = ["uid", "cn", "givenName", "sn", "mail"]


class DirectoryError(Exception):
    """The directory refused an operation (no such entry, already exists, ...)."""


class DirectoryUnavailable(DirectoryError):
    """slapd could not be reached or did not answer in time."""


@dataclass(frozen=True)
class DirectoryUser:
    dn: str
    uid: str
    cn: str
    given_name: str
    sn: str
    mail: str
    sender_blocked: bool

    @property
    def display_name(self) -> str:
        return self.cn or self.uid


def user_dn(uid: str) -> str:
    return f"uid={escape_rdn(uid)},{settings.LDAP_PEOPLE_DN}"


def _first(entry: ldap3.Entry, attribute: str) -> str:
    values = entry.entry_attributes_as_dict.get(attribute) or []
    return str(values[0]) if values else ""


def _is_true(value: object) -> bool:
    # Without schema (get_info=NONE) ldap3 returns a BOOLEAN as the string "TRUE"/"FALSE".
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value is True or str(value).upper() == "TRUE"


def _to_user(entry: ldap3.Entry) -> DirectoryUser:
    return DirectoryUser(
        dn=entry.entry_dn,
        uid=_first(entry, "uid"),
        cn=_first(entry, "cn"),
        given_name=_first(entry, "givenName"),
        sn=_first(entry, "sn"),
        mail=_first(entry, "mail").lower(),
        sender_blocked=_is_true(entry.entry_attributes_as_dict.get(settings.LDAP_SENDER_BLOCK_ATTR)),
    )


@contextmanager
def _errors_translated() -> Iterator[None]:
    try:
        yield
    except (LDAPSocketOpenError, LDAPCommunicationError) as exc:
        raise DirectoryUnavailable(f"the directory stopped answering ({settings.LDAP_URI})") from exc
    except LDAPException as exc:
        raise DirectoryError(str(exc)) from exc


@contextmanager
def connection() -> Iterator[ldap3.Connection]:
    shared = _shared_connection.get()
    if shared is not None:
        with _errors_translated():
            yield shared
        return
    server = ldap3.Server(settings.LDAP_URI, connect_timeout=settings.LDAP_TIMEOUT, get_info=ldap3.NONE)
    try:
        conn = ldap3.Connection(
            server,
            user=settings.LDAP_SERVICE_DN,
            password=settings.LDAP_SERVICE_PASSWORD,
            receive_timeout=settings.LDAP_TIMEOUT,
            raise_exceptions=True,
            auto_bind=ldap3.AUTO_BIND_NO_TLS,
        )
    except (LDAPSocketOpenError, LDAPCommunicationError) as exc:
        raise DirectoryUnavailable(f"the directory is unreachable ({settings.LDAP_URI})") from exc
    except LDAPException as exc:
        raise DirectoryError(f"the directory refused the service account: {exc}") from exc
    try:
        with _errors_translated():
            yield conn
    finally:
        conn.unbind()


# Set by one_connection(): the connection every call in this context uses.
_shared_connection: ContextVar[ldap3.Connection | None] = ContextVar("directory_connection", default=None)


@contextmanager
def one_connection() -> Iterator[None]:
    """Every directory call inside uses one connection, bound once (a CSV import's thousands of
    rows); closed at the end. A failure ends it like any other: DirectoryUnavailable."""
    with connection() as conn:
        token = _shared_connection.set(conn)
        try:
            yield
        finally:
            _shared_connection.reset(token)


def _attributes() -> list[str]:
    return [*USER_ATTRIBUTES, settings.LDAP_SENDER_BLOCK_ATTR]


def get_user(uid: str) -> DirectoryUser | None:
    if not UID_PATTERN.fullmatch(uid):
        return None
    with connection() as conn:
        try:
            conn.search(user_dn(uid), "(objectClass=mailAccount)", ldap3.BASE, attributes=_attributes())
        except ldap3.core.exceptions.LDAPNoSuchObjectResult:
            return None
        return _to_user(conn.entries[0]) if conn.entries else None


def find_user_by_mail(address: str) -> DirectoryUser | None:
    with connection() as conn:
        conn.search(
            settings.LDAP_PEOPLE_DN,
            f"(&(objectClass=mailAccount)(mail={escape_filter_chars(address)}))",
            attributes=_attributes(),
            size_limit=2,
        )
        return _to_user(conn.entries[0]) if conn.entries else None


def people_named(local_part: str) -> set[str]:
    """uids of the people whose uid, or the part before @ of whose mail, is this name
    (case-insensitive): an address with their name would pass for theirs."""
    name = escape_filter_chars(local_part)
    with connection() as conn:
        conn.search(
            settings.LDAP_PEOPLE_DN,
            f"(&(objectClass=mailAccount)(|(uid={name})(mail={name}@*)))",
            attributes=["uid"],
        )
        return {_first(entry, "uid") for entry in conn.entries}


def mail_exists(address: str) -> bool:
    """Whether any entry has this mail address (case-insensitive, as slapd compares mail)."""
    return find_user_by_mail(address) is not None


def mailbox_in_domain(domain: str) -> str | None:
    """One mailbox address of this domain, if any entry has one (for "is this domain in use")."""
    with connection() as conn:
        conn.search(
            settings.LDAP_PEOPLE_DN,
            f"(&(objectClass=mailAccount)(mail=*@{escape_filter_chars(domain)}))",
            attributes=["mail"],
            size_limit=1,
        )
        return _first(conn.entries[0], "mail").lower() if conn.entries else None


def iter_users(extra_filter: str = "") -> Iterator[DirectoryUser]:
    """Every mail user, paged (for map rendering and reconciliation)."""
    with connection() as conn:
        entries = conn.extend.standard.paged_search(
            settings.LDAP_PEOPLE_DN,
            f"(&(objectClass=mailAccount){extra_filter})",
            attributes=_attributes(),
            paged_size=1000,
            generator=True,
        )
        for entry in entries:
            if entry.get("type") != "searchResEntry":
                continue
            attrs = entry["attributes"]
            yield DirectoryUser(
                dn=entry["dn"],
                uid=_plain(attrs.get("uid")),
                cn=_plain(attrs.get("cn")),
                given_name=_plain(attrs.get("givenName")),
                sn=_plain(attrs.get("sn")),
                mail=_plain(attrs.get("mail")).lower(),
                sender_blocked=_is_true(attrs.get(settings.LDAP_SENDER_BLOCK_ATTR)),
            )


@dataclass(frozen=True)
class MailEntry:
    dn: str
    uid: str
    mail: str  # lower-case, as stored: not checked here (the map renderer checks it)


def mail_entries() -> list[MailEntry]:
    """Every mail user's uid and mail: one paged search, whatever the number of people (the
    map renderer's and the directory sync's view of where mail goes)."""
    with connection() as conn:
        entries = conn.extend.standard.paged_search(
            settings.LDAP_PEOPLE_DN,
            "(objectClass=mailAccount)",
            attributes=["uid", "mail"],
            paged_size=1000,
            generator=True,
        )
        return [
            MailEntry(
                dn=entry["dn"],
                uid=_plain(entry["attributes"].get("uid")),
                mail=_plain(entry["attributes"].get("mail")).lower(),
            )
            for entry in entries
            if entry.get("type") == "searchResEntry"
        ]


def _plain(value: object) -> str:
    if isinstance(value, list):
        return str(value[0]) if value else ""
    return "" if value is None else str(value)


def create_user(
    uid: str,
    cn: str,
    sn: str,
    mail: str,
    password: str | None,
    given_name: str = "",
    *,
    hashed_password: str | None = None,
) -> DirectoryUser:
    """One add: the entry exists whole or not at all. `hashed_password` is a `{CRAM-MD5}` value
    as stored (an export of this or another server), used instead of `password`."""
    if not UID_PATTERN.fullmatch(uid):
        raise DirectoryError(f"invalid uid {uid!r}")
    attributes: dict[str, object] = {"uid": uid, "cn": cn, "sn": sn or cn, "mail": mail.lower()}
    if given_name:
        attributes["givenName"] = given_name
    if hashed_password is not None:
        attributes["userPassword"] = hashed_password
    elif password is not None:
        attributes["userPassword"] = cram_md5_hash(password)
    with connection() as conn:
        try:
            conn.add(user_dn(uid), ["inetOrgPerson", "mailAccount"], attributes)
        except ldap3.core.exceptions.LDAPEntryAlreadyExistsResult:
            raise DirectoryError(f"a user with uid {uid!r} already exists") from None
    # The entry as written (not read back: a CSV import adds thousands).
    return DirectoryUser(
        dn=user_dn(uid), uid=uid, cn=cn, given_name=given_name, sn=sn or cn, mail=mail.lower(), sender_blocked=False
    )


def delete_user(uid: str) -> None:
    with connection() as conn:
        for group_dn in (settings.LDAP_ADMIN_GROUP_DN, settings.LDAP_HELPDESK_GROUP_DN):
            try:
                conn.modify(group_dn, {"member": [(ldap3.MODIFY_DELETE, [user_dn(uid)])]})
            except ldap3.core.exceptions.LDAPNoSuchAttributeResult:
                pass
        try:
            conn.delete(user_dn(uid))
        except ldap3.core.exceptions.LDAPNoSuchObjectResult:
            pass


def set_password(uid: str, password: str) -> None:
    with connection() as conn:
        conn.modify(user_dn(uid), {"userPassword": [(ldap3.MODIFY_REPLACE, [cram_md5_hash(password)])]})


def remove_password(uid: str) -> None:
    """Disable an account: with no userPassword neither this app nor Dovecot accepts a login."""
    with connection() as conn:
        try:
            conn.modify(user_dn(uid), {"userPassword": [(ldap3.MODIFY_DELETE, [])]})
        except ldap3.core.exceptions.LDAPNoSuchAttributeResult:
            pass


def has_password(uid: str) -> bool:
    return password_hash(uid) is not None


def set_sender_blocked(uid: str, blocked: bool) -> None:
    attr = settings.LDAP_SENDER_BLOCK_ATTR
    with connection() as conn:
        conn.modify(user_dn(uid), {attr: [(ldap3.MODIFY_REPLACE, ["TRUE" if blocked else "FALSE"])]})


def add_to_group(uid: str, group_dn: str) -> None:
    with connection() as conn:
        try:
            conn.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [user_dn(uid)])]})
        except ldap3.core.exceptions.LDAPAttributeOrValueExistsResult:
            pass


def remove_from_group(uid: str, group_dn: str) -> None:
    with connection() as conn:
        try:
            conn.modify(group_dn, {"member": [(ldap3.MODIFY_DELETE, [user_dn(uid)])]})
        except ldap3.core.exceptions.LDAPNoSuchAttributeResult:
            pass


def group_member_uids(group_dn: str) -> set[str]:
    with connection() as conn:
        conn.search(group_dn, "(objectClass=groupOfNames)", ldap3.BASE, attributes=["member"])
        members = conn.entries[0].entry_attributes_as_dict.get("member", []) if conn.entries else []
    suffix = "," + settings.LDAP_PEOPLE_DN.lower()
    return {
        str(dn)[len("uid=") : -len(suffix)]
        for dn in members
        if str(dn).lower().startswith("uid=") and str(dn).lower().endswith(suffix)
    }


def password_hash(uid: str) -> str | None:
    """The stored userPassword value (a secret: never log or display it)."""
    with connection() as conn:
        try:
            conn.search(user_dn(uid), "(objectClass=mailAccount)", ldap3.BASE, attributes=["userPassword"])
        except ldap3.core.exceptions.LDAPNoSuchObjectResult:
            return None
        values = conn.entries[0].entry_attributes_as_dict.get("userPassword", []) if conn.entries else []
    if not values:
        return None
    value = values[0]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def password_hashes() -> dict[str, str]:
    """uid -> stored userPassword value of every mail user, one paged search (for the admins'
    export; secrets: never log or display them). Accounts without a password are left out."""
    with connection() as conn:
        entries = conn.extend.standard.paged_search(
            settings.LDAP_PEOPLE_DN,
            "(&(objectClass=mailAccount)(userPassword=*))",
            attributes=["uid", "userPassword"],
            paged_size=1000,
            generator=True,
        )
        return {
            _plain(entry["attributes"].get("uid")): (entry["raw_attributes"].get("userPassword") or [b""])[0].decode(
                "utf-8", "replace"
            )
            for entry in entries
            if entry.get("type") == "searchResEntry"
        }


def _paged_entries(conn: ldap3.Connection, flt: str, wanted: int, attributes: list[str]) -> list[ldap3.Entry]:
    found: list[ldap3.Entry] = []
    cookie: bytes | None = None
    while len(found) < wanted:
        conn.search(
            settings.LDAP_PEOPLE_DN,
            flt,
            attributes=attributes,
            paged_size=min(wanted - len(found), 500),
            paged_cookie=cookie,
        )
        found.extend(conn.entries)
        controls = conn.result.get("controls", {})
        cookie = controls.get("1.2.840.113556.1.4.319", {}).get("value", {}).get("cookie")
        if not cookie:
            break
    return found[:wanted]


def search_users(query: str, limit: int = 25, offset: int = 0) -> tuple[list[DirectoryUser], bool]:
    """Users whose uid, cn or mail contains `query` (all users if empty), server-side paged,
    in the server's (stable) order. Returns one page and whether more follow.

    A later page skips the earlier entries by DN only (no attributes: parsing whole entries
    is what costs), then reads the page's own entries.
    """
    term = escape_filter_chars(query.strip())
    if term:
        flt = f"(&(objectClass=mailAccount)(|(uid=*{term}*)(cn=*{term}*)(mail=*{term}*)))"
    else:
        flt = "(objectClass=mailAccount)"
    wanted = offset + limit + 1
    with connection() as conn:
        if offset == 0:
            users = [_to_user(entry) for entry in _paged_entries(conn, flt, wanted, _attributes())]
            return users[:limit], len(users) > limit
        dns = [entry.entry_dn for entry in _paged_entries(conn, flt, wanted, ["1.1"])]
        page: list[DirectoryUser] = []
        for dn in dns[offset : offset + limit]:
            try:
                conn.search(dn, "(objectClass=mailAccount)", ldap3.BASE, attributes=_attributes())
            except ldap3.core.exceptions.LDAPNoSuchObjectResult:
                continue  # deleted in between
            page.extend(_to_user(entry) for entry in conn.entries)
    return page, len(dns) > offset + limit


@dataclass(frozen=True)
class SessionFacts:
    """What a signed-in session rests on, as the directory has it now."""

    has_password: bool
    # A digest of the userPassword values (never the values): a change by any tool shows.
    password_digest: str
    # The DNs of the groups under LDAP_GROUPS_DN that list the person as a member.
    groups: frozenset[str]


def session_facts(uid: str) -> SessionFacts | None:
    """None when the entry is gone. Two searches: the entry, and the groups naming it."""
    if not UID_PATTERN.fullmatch(uid):
        return None
    dn = user_dn(uid)
    with connection() as conn:
        try:
            conn.search(dn, "(objectClass=mailAccount)", ldap3.BASE, attributes=["userPassword"])
        except ldap3.core.exceptions.LDAPNoSuchObjectResult:
            return None
        if not conn.entries:
            return None
        values = conn.entries[0].entry_attributes_as_dict.get("userPassword", [])
        conn.search(
            settings.LDAP_GROUPS_DN,
            f"(&(objectClass=groupOfNames)(member={escape_filter_chars(dn)}))",
            ldap3.SUBTREE,
            attributes=[],
        )
        groups = frozenset(str(entry.entry_dn).lower() for entry in conn.entries)
    raw = b"\0".join(sorted(v if isinstance(v, bytes) else str(v).encode() for v in values))
    digest = hmac.new(settings.SECRET_KEY.encode(), raw, hashlib.sha256).hexdigest()
    return SessionFacts(has_password=bool(values), password_digest=digest, groups=groups)
