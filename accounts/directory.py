"""The one place mailadmin talks to OpenLDAP (through the app's service account).

Every function opens a connection, does its work and closes it; ldap3 errors become
DirectoryUnavailable (slapd down or unreachable) or DirectoryError (refused).
"""

import base64
import hashlib
import hmac
import os
import re
import secrets
import select
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, TypeVar, cast

import ldap3
from django.conf import settings
from ldap.controls.sss import SSSRequestControl
from ldap.controls.vlv import VLVRequestControl, VLVResponseControl
from ldap3.core.exceptions import (
    LDAPCommunicationError,
    LDAPException,
    LDAPInvalidDnError,
    LDAPOperationResult,
    LDAPSocketOpenError,
)
from ldap3.core.results import RESULT_CODES
from ldap3.protocol.sasl.sasl import validate_simple_password
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

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


def _found(conn: ldap3.Connection) -> list[dict[str, Any]]:
    """The entries of the last search as ldap3 received them: on the per-request paths, building
    its Entry objects (conn.entries) costs about a third as much as the search itself."""
    return [item for item in conn.response or [] if item.get("type") == "searchResEntry"]


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
def connection(bind_dn: str | None = None, password: str | None = None) -> Iterator[ldap3.Connection]:
    """A connection bound as the app's service account (the one of one_connection() when one is
    open), or as bind_dn (the setup command binds as the directory's manager)."""
    shared = _shared_connection.get() if bind_dn is None else None
    if shared is not None:
        if shared.conn is None:
            shared.conn = _bound()
        try:
            with _errors_translated():
                yield shared.conn
        except BaseException:
            shared.failed = True  # not to be kept: it may be broken, or hold an answer not read
            raise
        return
    conn = _bound(bind_dn, password)
    try:
        with _errors_translated():
            yield conn
    finally:
        conn.unbind()


def _bound(bind_dn: str | None = None, password: str | None = None) -> ldap3.Connection:
    server = ldap3.Server(settings.LDAP_URI, connect_timeout=settings.LDAP_TIMEOUT, get_info=ldap3.NONE)
    try:
        return ldap3.Connection(
            server,
            user=settings.LDAP_SERVICE_DN if bind_dn is None else bind_dn,
            password=_prepared(settings.LDAP_SERVICE_PASSWORD) if password is None else password,
            receive_timeout=settings.LDAP_TIMEOUT,
            raise_exceptions=True,
            auto_bind=ldap3.AUTO_BIND_NO_TLS,
        )
    except (LDAPSocketOpenError, LDAPCommunicationError) as exc:
        raise DirectoryUnavailable(f"the directory is unreachable ({settings.LDAP_URI})") from exc
    except LDAPException as exc:
        who = "the service account" if bind_dn is None else bind_dn
        raise DirectoryError(f"the directory refused {who}: {exc}") from exc


@lru_cache(maxsize=4)
def _prepared(password: str) -> str | bytes:
    """The service account's password as ldap3 sends it in a simple bind (RFC 4013 SASLprep),
    prepared once instead of for every connection (~0.1 ms each)."""
    return validate_simple_password(password) if password else password


@dataclass
class _Shared:
    conn: ldap3.Connection | None = None
    failed: bool = False


# Set by one_connection(): the connection every call in this context uses, once the first opened it.
_shared_connection: ContextVar[_Shared | None] = ContextVar("directory_connection", default=None)


@contextmanager
def one_connection(*, keep: bool = False) -> Iterator[None]:
    """Every directory call inside uses one connection, bound once at the first call (a CSV
    import's thousands of rows; an API request), none when nothing asks; closed at the end. A
    failure ends it like any other: DirectoryUnavailable. With keep (an API request), the
    connection is kept by the thread for its next request instead (see _take_kept)."""
    shared = _Shared(_take_kept() if keep else None)
    token = _shared_connection.set(shared)
    sound = False
    try:
        yield
        sound = True
    finally:
        _shared_connection.reset(token)
        if shared.conn is not None:
            if keep and sound and not shared.failed:
                _kept.entry = (shared.conn, time.monotonic(), os.getpid())
            else:
                _close(shared.conn)


# An API request's connection is kept by its thread for the next one instead of being closed:
# opening and binding one costs ~0.3 ms of the web worker's CPU, and some of slapd's, on every
# API call. It is used again only while sound: by the process that opened it, within
# KEPT_IDLE seconds of its last use (well within slapd's idletimeout or a firewall's idle cut),
# with nothing waiting on its socket (slapd closing it, on a restart or a timeout, makes the
# socket readable). A request that fails in any way closes it; the next one opens a new one.
KEPT_IDLE = 10.0
_kept = threading.local()


def _take_kept() -> ldap3.Connection | None:
    conn, used_at, pid = getattr(_kept, "entry", None) or (None, 0.0, 0)
    _kept.entry = None
    if conn is None:
        return None
    if pid != os.getpid() or time.monotonic() - used_at > KEPT_IDLE or not _quiet(conn):
        _close(conn)
        return None
    return conn


def _quiet(conn: ldap3.Connection) -> bool:
    """Open, with nothing to read: an idle connection slapd has closed has its end readable."""
    sock = getattr(conn, "socket", None)
    if conn.closed or sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _attributes() -> list[str]:
    return [*USER_ATTRIBUTES, settings.LDAP_SENDER_BLOCK_ATTR]


@dataclass(frozen=True)
class _ReadAhead:
    uids: frozenset[str]
    mails: frozenset[str]
    users: dict[str, DirectoryUser]  # by uid: the entries get_user() would find
    taken: frozenset[str]  # every mail value of the entries found, lower-case


# Set by read_ahead(): what get_user() and mail_exists() answer for the uids and mails it read.
_read_ahead: ContextVar[_ReadAhead | None] = ContextVar("directory_read_ahead", default=None)
READ_AHEAD_TERMS = 200  # alternatives per search filter


@contextmanager
def read_ahead(uids: Collection[str], mails: Collection[str]) -> Iterator[None]:
    """Inside, get_user() of these uids and mail_exists() of these addresses answer from what one
    search (per READ_AHEAD_TERMS of them) read on entering, instead of a round trip each: a CSV
    import checks a batch of rows this way. Anything else still asks the directory. What it read
    is the directory of that moment: keep it to one batch's checks."""
    wanted_uids = frozenset(uid for uid in uids if UID_PATTERN.fullmatch(uid))
    wanted_mails = frozenset(mail.lower() for mail in mails if mail)
    terms = [f"(uid={escape_filter_chars(uid)})" for uid in sorted(wanted_uids)]
    terms += [f"(mail={escape_filter_chars(mail)})" for mail in sorted(wanted_mails)]
    uid_of_dn = {user_dn(uid).lower(): uid for uid in wanted_uids}
    users: dict[str, DirectoryUser] = {}
    taken: set[str] = set()
    with connection() as conn:
        for start in range(0, len(terms), READ_AHEAD_TERMS):
            alternatives = "".join(terms[start : start + READ_AHEAD_TERMS])
            conn.search(
                settings.LDAP_PEOPLE_DN, f"(&(objectClass=mailAccount)(|{alternatives}))", attributes=_attributes()
            )
            for entry in conn.entries:
                taken.update(str(mail).lower() for mail in entry.entry_attributes_as_dict.get("mail") or [])
                uid = uid_of_dn.get(entry.entry_dn.lower())
                if uid is not None:
                    users[uid] = _to_user(entry)
    token = _read_ahead.set(_ReadAhead(wanted_uids, wanted_mails, users, frozenset(taken)))
    try:
        yield
    finally:
        _read_ahead.reset(token)


def get_user(uid: str) -> DirectoryUser | None:
    if not UID_PATTERN.fullmatch(uid):
        return None
    known = _read_ahead.get()
    if known is not None and uid in known.uids:
        return known.users.get(uid)
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


@dataclass(frozen=True)
class AddressClaims:
    mailbox: bool  # an entry has this mail address (mail_exists)
    # Without a mailbox: the uids of the people whose uid, or the part before @ of whose mail, is
    # the local part (case-insensitive): an address with their name would pass for theirs.
    named: frozenset[str]


def address_claims(address: str) -> AddressClaims:
    """Whether an entry has this address, or else who is named like its local part: one search."""
    local_part = address.rpartition("@")[0]
    name = escape_filter_chars(local_part)
    with connection() as conn:
        conn.search(
            settings.LDAP_PEOPLE_DN,
            f"(&(objectClass=mailAccount)(|(mail={escape_filter_chars(address)})(uid={name})(mail={name}@*)))",
            attributes=["uid", "mail"],
        )
        entries = [entry["attributes"] for entry in _found(conn)]
    wanted = address.lower()
    if any(wanted == str(mail).lower() for entry in entries for mail in entry.get("mail", [])):
        return AddressClaims(mailbox=True, named=frozenset())
    # No entry has the address, so slapd matched each by its uid or its mail's local part.
    return AddressClaims(mailbox=False, named=frozenset(str((entry.get("uid") or [""])[0]) for entry in entries))


def mail_exists(address: str) -> bool:
    """Whether any entry has this mail address (case-insensitive, as slapd compares mail)."""
    known = _read_ahead.get()
    if known is not None and address.lower() in known.mails:
        return address.lower() in known.taken
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


def mail_entries_of(uids: Collection[str], mails: Collection[str], domains: Collection[str]) -> list[MailEntry]:
    """The uid and mail of the people with these uids or mail addresses, and of one person of
    each of these domains: a few entries where mail_entries() reads every one (explain)."""
    terms = [f"(uid={escape_filter_chars(uid)})" for uid in sorted(uids)]
    terms += [f"(mail={escape_filter_chars(mail)})" for mail in sorted(mails)]
    searches = [(f"(&(objectClass=mailAccount)(|{''.join(terms)}))", 0)] if terms else []
    searches += [(f"(&(objectClass=mailAccount)(mail=*@{escape_filter_chars(d)}))", 1) for d in sorted(domains)]
    found: dict[str, MailEntry] = {}
    with connection() as conn:
        for search_filter, limit in searches:
            conn.search(settings.LDAP_PEOPLE_DN, search_filter, attributes=["uid", "mail"], size_limit=limit)
            if not limit and conn.result["result"] != 0:  # the server's size or time limit: a part only
                raise DirectoryError(f"the directory answered part of a search: {conn.result['description']}")
            for entry in conn.entries:
                found[entry.entry_dn] = MailEntry(entry.entry_dn, _first(entry, "uid"), _first(entry, "mail").lower())
    return list(found.values())


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
        return _members(conn, group_dn)


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
    # The sender-block flag (LDAP_SENDER_BLOCK_ATTR): set for a suspended sender.
    sender_blocked: bool = False


def session_facts(uid: str) -> SessionFacts | None:
    """None when the entry is gone. One search for the entry and the groups naming it, from
    the nearest entry above both LDAP_PEOPLE_DN and LDAP_GROUPS_DN (two searches when they
    share none): every API request and every session re-check asks this."""
    if not UID_PATTERN.fullmatch(uid):
        return None
    dn = user_dn(uid)
    base = _common_base(settings.LDAP_PEOPLE_DN, settings.LDAP_GROUPS_DN)
    person_filter = f"(&(objectClass=mailAccount)(uid={escape_filter_chars(uid)}))"
    groups_filter = f"(&(objectClass=groupOfNames)(member={escape_filter_chars(dn)}))"
    attributes = ["objectClass", "userPassword", settings.LDAP_SENDER_BLOCK_ATTR]
    with connection() as conn:
        try:
            if base is not None:
                conn.search(base, f"(|{person_filter}{groups_filter})", ldap3.SUBTREE, attributes=attributes)
            else:
                conn.search(dn, person_filter, ldap3.BASE, attributes=attributes)
        except ldap3.core.exceptions.LDAPNoSuchObjectResult:
            return None  # nothing above the entry, or the entry itself, exists
        found = _found(conn)
        if base is None and found:
            conn.search(settings.LDAP_GROUPS_DN, groups_filter, ldap3.SUBTREE, attributes=["objectClass"])
            found += _found(conn)
    own, groups_dn = _dn_key(dn), _dn_key(settings.LDAP_GROUPS_DN)
    entry, groups = None, set()
    for item in found:
        key, classes = _dn_key(item["dn"]), {str(c).lower() for c in item["attributes"].get("objectClass", [])}
        if key == own and "mailaccount" in classes:
            entry = item["attributes"]
        elif _is_under(key, groups_dn) and "groupofnames" in classes:
            groups.add(str(item["dn"]).lower())
    if entry is None:
        return None
    values = entry.get("userPassword", [])
    blocked = _is_true(entry.get(settings.LDAP_SENDER_BLOCK_ATTR))
    raw = b"\0".join(sorted(v if isinstance(v, bytes) else str(v).encode() for v in values))
    digest = hmac.new(settings.SECRET_KEY.encode(), raw, hashlib.sha256).hexdigest()
    return SessionFacts(
        has_password=bool(values), password_digest=digest, groups=frozenset(groups), sender_blocked=blocked
    )


def _dn_key(dn: str) -> tuple[tuple[str, str], ...]:
    """A DN as slapd compares the ones here (attribute names and these values case-insensitively)."""
    return tuple((name.lower(), value.lower()) for name, value, _ in parse_dn(dn))


def _is_under(key: tuple[tuple[str, str], ...], base: tuple[tuple[str, str], ...]) -> bool:
    return len(key) >= len(base) and key[len(key) - len(base) :] == base


@lru_cache(maxsize=4)
def _common_base(first: str, second: str) -> str | None:
    """The nearest DN both are under (or are), None when they share no part."""
    one, other = _dn_key(first), _dn_key(second)
    shared = 0
    while shared < min(len(one), len(other)) and one[-1 - shared] == other[-1 - shared]:
        shared += 1
    parts = parse_dn(first)
    return ",".join(f"{name}={value}" for name, value, _ in parts[len(parts) - shared :]) if shared else None


# --- Setting up an existing directory (manage.py ldap_setup), bound as its manager -------------


@dataclass(frozen=True)
class Manager:
    """Whoever may add entries under the base DN (slapd's rootdn or an admin account)."""

    dn: str
    password: str


@dataclass(frozen=True)
class NewEntry:
    dn: str
    attributes: dict[str, list[str]]


def ssha(password: str) -> str:
    """slapd's salted SHA-1 userPassword format, checked by slapd itself on a simple bind."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 -- the {SSHA} scheme
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def existing_dns(manager: Manager, dns: list[str]) -> set[str]:
    """Which of these entries exist (compared case-insensitively; returned as given)."""
    found = set()
    with connection(manager.dn, manager.password) as conn:
        for dn in dns:
            try:
                conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["1.1"])
            except ldap3.core.exceptions.LDAPNoSuchObjectResult:
                continue
            if conn.entries:
                found.add(dn)
    return found


def add_entry(manager: Manager, entry: NewEntry) -> None:
    with connection(manager.dn, manager.password) as conn:
        classes = entry.attributes["objectClass"]
        conn.add(entry.dn, classes, {k: v for k, v in entry.attributes.items() if k != "objectClass"})


def member_dns(manager: Manager, group_dn: str) -> set[str]:
    with connection(manager.dn, manager.password) as conn:
        conn.search(group_dn, "(objectClass=groupOfNames)", ldap3.BASE, attributes=["member"])
        members = conn.entries[0].entry_attributes_as_dict.get("member", []) if conn.entries else []
    return {str(dn).lower() for dn in members}


def add_member(manager: Manager, group_dn: str, member_dn: str) -> None:
    with connection(manager.dn, manager.password) as conn:
        try:
            conn.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [member_dn])]})
        except ldap3.core.exceptions.LDAPAttributeOrValueExistsResult:
            pass


def set_entry_password(manager: Manager, dn: str, password: str) -> None:
    with connection(manager.dn, manager.password) as conn:
        conn.modify(dn, {"userPassword": [(ldap3.MODIFY_REPLACE, [ssha(password)])]})


def can_bind(dn: str, password: str) -> bool:
    """Whether dn binds with password (a service account's password file is still right)."""
    try:
        with connection(dn, password):
            return True
    except DirectoryUnavailable:
        raise
    except DirectoryError:
        return False


# --- The staff user list: sorted, filtered, counted and paged by slapd -------------------
#
# slapd's sssvlv overlay (server-side sort, RFC 2891, and virtual list view) answers one page
# of a sorted result together with the number of matching entries, in one round trip, however
# large the directory: nothing about people is kept here between requests.

SORT_CONTROL = "1.2.840.113556.1.4.473"
VLV_REQUEST = "2.16.840.1.113730.3.4.9"
VLV_RESPONSE = "2.16.840.1.113730.3.4.10"
# slapd answers a page past the end with RFC 2891's virtualListViewError, a code ldap3 2.9
# does not know (its decoder fails with a KeyError); named here, it becomes an ordinary result.
VLV_ERROR = 76
RESULT_CODES.setdefault(VLV_ERROR, "virtualListViewError")


class UserSort(StrEnum):
    UID = "uid"
    NAME = "cn"
    MAIL = "mail"


class UserRole(StrEnum):
    ADMIN = "admin"
    HELPDESK = "helpdesk"
    END_USER = "end user"


class UserState(StrEnum):
    """One word per person, the first that holds: disabled (no password), suspended (the
    sender-block flag), away (a vacation reply in force now, from the caller), active."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    DISABLED = "disabled"
    AWAY = "away"


@dataclass(frozen=True)
class UserListing:
    users: list[DirectoryUser]
    total: int  # entries matching the search and filters
    offset: int  # of the first entry shown (0-based; moved back when past the end)
    disabled: frozenset[str]  # uids on this page without a password
    admins: frozenset[str]  # the staff groups' members, as read for this page
    helpdesk: frozenset[str]


class DirectoryCannotSort(DirectoryError):
    """slapd has no sssvlv overlay (see docs/console.md)."""


def _any_uid(uids: "frozenset[str] | set[str]") -> str:
    if not uids:
        return "(!(objectClass=*))"  # matches nothing
    return "(|" + "".join(f"(uid={escape_filter_chars(uid)})" for uid in sorted(uids)) + ")"


def _members(conn: ldap3.Connection, group_dn: str) -> set[str]:
    """uids of the people a role group lists (read at the group's own DN, wherever it is)."""
    try:
        conn.search(group_dn, "(objectClass=groupOfNames)", ldap3.BASE, attributes=["member"])
    except ldap3.core.exceptions.LDAPNoSuchObjectResult:
        return set()
    members = conn.entries[0].entry_attributes_as_dict.get("member", []) if conn.entries else []
    suffix = "," + settings.LDAP_PEOPLE_DN.lower()
    return {
        str(dn)[len("uid=") : -len(suffix)]
        for dn in members
        if str(dn).lower().startswith("uid=") and str(dn).lower().endswith(suffix)
    }


def _group_members(conn: ldap3.Connection) -> tuple[frozenset[str], frozenset[str]]:
    """The admins, and the helpdesk members who are not also admins."""
    admins = frozenset(_members(conn, settings.LDAP_ADMIN_GROUP_DN))
    return admins, frozenset(_members(conn, settings.LDAP_HELPDESK_GROUP_DN)) - admins


def _listing_filter(
    query: str,
    role: UserRole | None,
    state: UserState | None,
    away: frozenset[str],
    admins: frozenset[str],
    helpdesk: frozenset[str],
) -> str:
    parts = ["(objectClass=mailAccount)"]
    term = escape_filter_chars(query.strip())
    if term:
        parts.append(f"(|(uid=*{term}*)(cn=*{term}*)(mail=*{term}*))")
    if role == UserRole.ADMIN:
        parts.append(_any_uid(admins))
    elif role == UserRole.HELPDESK:
        parts.append(_any_uid(helpdesk))
    elif role == UserRole.END_USER:
        parts.append(f"(!{_any_uid(admins | helpdesk)})")
    blocked = f"({settings.LDAP_SENDER_BLOCK_ATTR}=TRUE)"
    if state == UserState.DISABLED:
        parts.append("(!(userPassword=*))")
    elif state == UserState.SUSPENDED:
        parts.append(f"(userPassword=*){blocked}")
    elif state == UserState.AWAY:
        parts.append(f"(userPassword=*)(!{blocked}){_any_uid(away)}")
    elif state == UserState.ACTIVE:
        parts.append(f"(userPassword=*)(!{blocked})(!{_any_uid(away)})")
    return "(&" + "".join(parts) + ")"


def _sorted_page(
    conn: ldap3.Connection, flt: str, sort: UserSort, descending: bool, offset: int, limit: int
) -> tuple[list[DirectoryUser], int | None]:
    """One page and the number of matches; None for both when the page lies past the end."""
    rule = f"{'-' if descending else ''}{sort.value}:caseIgnoreOrderingMatch"
    sss = SSSRequestControl(criticality=True, ordering_rules=[rule])
    # VLV offsets count from 1; content_count 0 asks slapd to count.
    vlv = VLVRequestControl(criticality=True, before_count=0, after_count=limit - 1, offset=offset + 1, content_count=0)
    try:
        conn.search(
            settings.LDAP_PEOPLE_DN,
            flt,
            attributes=_attributes(),
            controls=[
                (SORT_CONTROL, True, sss.encodeControlValue()),
                (VLV_REQUEST, True, vlv.encodeControlValue()),
            ],
        )
    except ldap3.core.exceptions.LDAPUnavailableCriticalExtensionResult:
        raise DirectoryCannotSort("the directory cannot sort: load slapd's sssvlv overlay") from None
    except LDAPOperationResult as exc:
        if exc.result == VLV_ERROR and offset > 0:
            return [], None
        raise
    response = VLVResponseControl()
    value = conn.result.get("controls", {}).get(VLV_RESPONSE, {}).get("value")
    if value is None:
        raise DirectoryCannotSort("the directory answered without a virtual list view")
    response.decodeControlValue(value)
    return [_to_user(entry) for entry in conn.entries], int(response.content_count or 0)


# Answers slapd sorted and counted (user list pages, mailbox counts per domain), keyed by what
# was asked and by the directory's change stamp: the suffix entry's contextCSN, kept by the
# syncprov overlay, which every add, modify, delete or group change in the database moves,
# whichever tool made it. Each request reads the stamp first, so an answer is reused only while
# the directory is exactly as it was; without a readable stamp nothing is reused. Per process;
# the least recently used answers go first.
_ANSWERS: "OrderedDict[tuple[object, ...], object]" = OrderedDict()
_ANSWERS_LOCK = threading.Lock()
ANSWERS_KEPT = 512
_T = TypeVar("_T")


def _change_stamp(conn: ldap3.Connection) -> tuple[str, ...] | None:
    """The directory's contextCSN values (one per server in a replicated directory), or None."""
    try:
        conn.search(settings.LDAP_BASE_DN, "(objectClass=*)", ldap3.BASE, attributes=["contextCSN"])
    except ldap3.core.exceptions.LDAPNoSuchObjectResult:
        return None
    # The raw response: building ldap3's Entry objects costs more than the search here.
    values = conn.response[0]["attributes"].get("contextCSN") if conn.response else None
    return tuple(sorted(str(value) for value in values)) if values else None


# The stamp is asked on every user list page: on a connection each thread keeps open between
# requests for that one search, instead of one opened and bound per page (0.6 ms of the worker's
# CPU and as much of slapd's). It is opened again after any failure (slapd restarted, an idle
# timeout). An answer is still read on a connection of its own, with the stamp read again there:
# an answer and the stamp it is kept under come from the same server.
_stamp_reader = threading.local()


def _stamp_now() -> tuple[str, ...] | None:
    kept: ldap3.Connection | None = getattr(_stamp_reader, "connection", None)
    if kept is not None:
        try:
            with _errors_translated():
                return _change_stamp(kept)
        except DirectoryError:
            _stamp_reader.connection = None
            _close(kept)
    conn = _bound()
    try:
        with _errors_translated():
            stamp = _change_stamp(conn)
    except DirectoryError:
        _close(conn)
        raise
    _stamp_reader.connection = conn
    return stamp


def _close(conn: ldap3.Connection) -> None:
    try:
        conn.unbind()
    except LDAPException:
        pass  # already gone


def _reused(question: tuple[object, ...], read: Callable[[ldap3.Connection], _T]) -> _T:
    """The answer to `question` given under the directory's present change stamp, or `read()`
    on a new connection (and kept under the stamp read there)."""
    stamp = _stamp_now()
    if stamp is not None:
        with _ANSWERS_LOCK:
            if (stamp, *question) in _ANSWERS:
                _ANSWERS.move_to_end((stamp, *question))
                return cast(_T, _ANSWERS[(stamp, *question)])
    with connection() as conn:
        stamp = _change_stamp(conn)
        answer = read(conn)
    if stamp is not None:
        with _ANSWERS_LOCK:
            _ANSWERS[(stamp, *question)] = answer
            while len(_ANSWERS) > ANSWERS_KEPT:
                _ANSWERS.popitem(last=False)
    return answer


def list_users(
    query: str = "",
    *,
    role: UserRole | None = None,
    state: UserState | None = None,
    away: frozenset[str] = frozenset(),
    sort: UserSort = UserSort.UID,
    descending: bool = False,
    offset: int = 0,
    limit: int = 25,
) -> UserListing:
    """One sorted page of the mail users matching `query` (uid, cn or mail contains it) and the
    filters, with the number of all matches. `away` names the people whose vacation reply is in
    force now (the database knows that, not the directory). The change stamp on the kept
    connection, and unless this very page was read since the directory last changed, one new
    connection: the stamp again, the two staff groups, the page, which of the page's people
    have no password."""
    question = ("users", query.strip(), role, state, away, sort, descending, offset, limit)

    def read(conn: ldap3.Connection) -> UserListing:
        return _read_listing(conn, query, role, state, away, sort, descending, offset, limit)

    return _reused(question, read)


def _read_listing(
    conn: ldap3.Connection,
    query: str,
    role: UserRole | None,
    state: UserState | None,
    away: frozenset[str],
    sort: UserSort,
    descending: bool,
    offset: int,
    limit: int,
) -> UserListing:
    admins, helpdesk = _group_members(conn)
    flt = _listing_filter(query, role, state, away, admins, helpdesk)
    users, total = _sorted_page(conn, flt, sort, descending, offset, limit)
    if total is None:  # past the end (people left meanwhile, or a typed address): the last page
        users, total = _sorted_page(conn, flt, sort, descending, 0, limit)
        offset = max(0, ((total or 0) - 1) // limit * limit)
        if offset:
            users, total = _sorted_page(conn, flt, sort, descending, offset, limit)
    disabled: set[str] = set()
    if users:
        conn.search(
            settings.LDAP_PEOPLE_DN,
            f"(&(objectClass=mailAccount)(!(userPassword=*)){_any_uid({u.uid for u in users})})",
            attributes=["uid"],
        )
        disabled = {_first(entry, "uid") for entry in conn.entries}
    return UserListing(users, total or 0, offset, frozenset(disabled), admins, helpdesk)


def mailbox_counts(domains: list[str]) -> dict[str, int]:
    """How many entries have a mailbox in each of these domains: one search per domain on one
    connection, counted by slapd (its virtual list view), whatever the number of people; reused
    while the directory's change stamp stays the same."""

    def read(conn: ldap3.Connection) -> dict[str, int]:
        counts: dict[str, int] = {}
        for domain in domains:
            flt = f"(&(objectClass=mailAccount)(mail=*@{escape_filter_chars(domain)}))"
            _, total = _sorted_page(conn, flt, UserSort.MAIL, False, 0, 1)
            counts[domain] = total or 0
        return counts

    return dict(_reused(("mailboxes", tuple(domains)), read))


def users_with_mail(address: str) -> list[str]:
    """The uids of the entries whose mailbox address this is (case-insensitive, as slapd
    compares mail): one for a person, several when entries share it."""
    with connection() as conn:
        conn.search(
            settings.LDAP_PEOPLE_DN,
            f"(&(objectClass=mailAccount)(mail={escape_filter_chars(address)}))",
            attributes=["uid"],
        )
        return sorted(_first(entry, "uid") for entry in conn.entries)


@dataclass(frozen=True)
class SignInEntry:
    """What a sign-in reads of a person: the password values to check, the fields the Django
    user row mirrors, and the names (cn) of the groups under LDAP_GROUPS_DN that list them."""

    passwords: list[str]
    given_name: str | None  # None: the entry has no such attribute
    sn: str | None
    mail: str | None
    group_names: frozenset[str]


def sign_in_entry(uid: str) -> SignInEntry | None:
    """None unless exactly one entry under LDAP_PEOPLE_DN has this uid. Two searches."""
    if not UID_PATTERN.fullmatch(uid):
        return None
    with connection() as conn:
        conn.search(
            settings.LDAP_PEOPLE_DN,
            f"(&(objectClass=mailAccount)(uid={escape_filter_chars(uid)}))",
            ldap3.LEVEL,
            attributes=["givenName", "sn", "mail", "userPassword"],
        )
        if len(conn.entries) != 1:
            return None
        entry = conn.entries[0]
        found = entry.entry_attributes_as_dict
        conn.search(
            settings.LDAP_GROUPS_DN,
            f"(&(objectClass=groupOfNames)(member={escape_filter_chars(str(entry.entry_dn))}))",
            ldap3.LEVEL,
            attributes=["cn"],
        )
        groups = frozenset(_first(group, "cn") for group in conn.entries if _first(group, "cn"))

    def text(value: object) -> str:
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    def single(attribute: str) -> str | None:
        values = found.get(attribute) or []
        return text(values[0]) if values else None

    return SignInEntry(
        passwords=[text(value) for value in found.get("userPassword", [])],
        given_name=single("givenName"),
        sn=single("sn"),
        mail=single("mail"),
        group_names=groups,
    )


def dn_first_value(dn: str) -> str:
    """The value of a DN's first RDN ("cn=dovecot,ou=services,…" → "dovecot"); ValueError when
    `dn` is not a DN."""
    try:
        return str(parse_dn(dn)[0][1])
    except LDAPInvalidDnError:
        raise ValueError(f"not a DN: {dn!r}") from None
