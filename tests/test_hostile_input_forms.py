"""A corpus of nasty values through every form of the project and through the vacation
responder: each gets a clear error or is handled, the service keeps running (no 500), and a
refused value changes nothing stored: no row, no directory entry, no map publication requested."""

import email
import hashlib
import re
import secrets
import smtplib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email.policy import default
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from accounts import directory, suspension
from accounts.models import SenderSuspension
from activity.models import BlockGeneration, LeakFlag, SenderBlock
from aliases.models import Alias, AliasTombstone, Domain
from api.models import ApiToken
from audit.models import AuditEvent
from handover.models import HandoverNote, TopicDelegate, WorkItem
from limits.models import SendingLimit
from localservices.outside import OutsideWorld
from localservices.process import free_port
from mfa import services
from outofoffice.models import ReplyLog, VacationReply
from outofoffice.responder import ResponderThread
from outofoffice.routing import routing_address
from postfix.models import MapGeneration
from tests.conftest import DEMO_PASSWORD
from tests.test_authorization_matrix import ALL_URLS

pytestmark = pytest.mark.django_db

MEGABYTE = "A" * 1_000_000
NASTY = [
    "line\nbreak",
    "head\r\nBcc: victim@example.org",
    "nul\x00byte",
    "esc\x1b[31m\x07bell",
    "bidi\u202eevil\u202c\u2066x",
    "zero\u200bwidth\ufeff",
    "*)(uid=*))(|(uid=*",
    "cn=admin,dc=example,dc=org\\2a",
    "<script>alert(1)</script>\"'&",
    "'; DROP TABLE aliases_alias; --",
    "%s%n{0}${x}",
    "\u0130\u0131\u017f\u212a",
    " ",
    MEGABYTE,
]
# Values that must never be stored in a field meant for one line (headers, map keys, LDAP).
LINE_BREAKS = re.compile(r"[\r\n\x00\x0b\x0c\x85\u2028\u2029]")


class FormFields(HTMLParser):
    """The fields of each POST form of a page, with their default values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, str]] = []
        self._in_form = False
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method", "").lower() == "post":
            self._in_form = True
            self.forms.append({})
        if not self._in_form:
            return
        values, name = self.forms[-1], a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button", "checkbox", "radio"):
            values.setdefault(name, a.get("value", ""))
        elif tag == "input" and name and a.get("type") in ("checkbox", "radio") and "checked" in a:
            values[name] = a.get("value", "on")
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select and (self._select not in values or "selected" in a):
            values[self._select] = a.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            values[name] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea and self.forms:
            self.forms[-1][self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None
        elif tag == "form":
            self._in_form = False


def page_fields(client: Client, url: str) -> dict[str, str]:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    parser = FormFields()
    parser.feed(response.content.decode())
    values = max(parser.forms, key=len)  # the page's own form, not the sign-out button
    values.pop("csrfmiddlewaretoken", None)
    return values


@dataclass
class World:
    owner: Client
    helpdesk: Client
    admin: Client
    target: directory.DirectoryUser  # an end user the staff act on
    delegate: directory.DirectoryUser
    alias: Alias
    domain: Domain
    created_uids: list[str] = field(default_factory=list)
    handover_page: dict[str, str] = field(default_factory=dict)

    def state(self, ldap: bool = True) -> str:
        """Everything a form could change: the rows and (for forms that write it) the directory."""
        parts = []
        for model in (Alias, AliasTombstone, Domain, VacationReply, ReplyLog, HandoverNote, TopicDelegate, WorkItem):
            parts.append(repr(list(model.objects.order_by("pk").values())))
        for model in (
            SenderSuspension,
            AuditEvent,
            MapGeneration,
            SendingLimit,
            SenderBlock,
            BlockGeneration,
            LeakFlag,
            ApiToken,
        ):
            parts.append(repr(list(model.objects.order_by("pk").values())))
        if ldap:
            for uid in (self.target.uid, self.owner.directory_user.uid):  # type: ignore[attr-defined]
                parts.append(repr(directory.get_user(uid)) + repr(directory.password_hash(uid)))
            parts.append(repr(sorted(u.uid for u in directory.iter_users())))
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@pytest.fixture
def world(sign_in, make_directory_user) -> World:
    owner = sign_in()
    owner_user = User.objects.get(username=owner.directory_user.uid)
    domain, _ = Domain.objects.get_or_create(name=settings.ALIAS_DOMAIN, defaults={"is_alias_domain": True})
    alias = Alias.objects.create(owner=owner_user, local_part="mine", domain=domain)
    made = World(
        owner=owner,
        helpdesk=sign_in("helpdesk"),
        admin=sign_in("admin"),
        target=make_directory_user(),
        delegate=make_directory_user(),
        alias=alias,
        domain=domain,
    )
    yield made
    for uid in made.created_uids:
        directory.delete_user(uid)


@dataclass
class Case:
    """One form: who posts it, where, a valid submission, and the fields to attack."""

    name: str
    client: Callable[[World], Client]
    url: Callable[[World], str]
    valid: Callable[[World], dict[str, str]]
    attack: tuple[str, ...]
    single_line: tuple[str, ...] = ()
    method: str = "POST"
    # Pages that only show a result (searches, the preview): 200 and nothing stored, ever.
    stateless: bool = False
    directory: bool = False  # the form writes to LDAP: compare the directory too
    ok_status: int = 302  # what an accepted submission answers
    after_accept: Callable[[World, dict[str, str]], None] = lambda world, data: None


def _unique() -> str:
    return secrets.token_hex(3)


def _restore_target_password(world: World, data: dict[str, str]) -> None:
    directory.set_password(world.target.uid, DEMO_PASSWORD)


def _reinstate_target(world: World, data: dict[str, str]) -> None:
    if suspension.is_suspended(world.target.uid):
        suspension.reinstate(world.target.uid, None)


def _remember_created(world: World, data: dict[str, str]) -> None:
    world.created_uids.append(data["uid"])


def _restore_owner_password(world: World, data: dict[str, str]) -> None:
    directory.set_password(world.owner.directory_user.uid, DEMO_PASSWORD)  # type: ignore[attr-defined]


def _vacation(world: World) -> dict[str, str]:
    return {
        "enabled": "on",
        "starts_at": "",
        "ends_at": "",
        "subject": "Away",
        "body": "Back on Monday.",
        "internal_body": "",
        "delegate": "",
        "interval_days": "7",
    }


def _handover(world: World) -> dict[str, str]:
    if not world.handover_page:  # the blank form's hidden formset fields, read once
        world.handover_page = page_fields(world.owner, "/handover/edit/")
    data = dict(world.handover_page)
    start = timezone.now().replace(second=0, microsecond=0) + timedelta(days=1)
    data.update(
        starts_at=start.strftime("%Y-%m-%dT%H:%M"),
        ends_at=(start + timedelta(days=5)).strftime("%Y-%m-%dT%H:%M"),
        time_zone="UTC",
        reachability="",
        primary_delegate=world.delegate.uid,
        pending_decisions="None.",
        contacts="Ask the team.",
    )
    return data


def _fresh_recovery_code(client: Client) -> str:
    user = User.objects.get(username=client.directory_user.uid)  # type: ignore[attr-defined]
    return services.new_recovery_codes(None, user)[0]


NEW_PASSWORD = "Quite a new pässword 73"
CASES = [
    Case(
        "password change",
        lambda w: w.owner,
        lambda w: "/accounts/password/",
        lambda w: {"current_password": DEMO_PASSWORD, "new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD},
        ("current_password", "new_password"),
        after_accept=_restore_owner_password,
        directory=True,
    ),
    Case(
        "custom alias",
        lambda w: w.owner,
        lambda w: "/aliases/new/custom/",
        lambda w: {"local_part": f"ok{_unique()}", "domain": str(w.domain.pk), "label": "", "expires_on": ""},
        ("local_part", "label", "expires_on", "domain"),
        single_line=("local_part", "label"),
    ),
    Case(
        "site alias",
        lambda w: w.owner,
        lambda w: "/aliases/new/site/",
        lambda w: {"site": f"https://shop{_unique()}.example.com/x", "local_part": "", "label": ""},
        ("site", "local_part", "label"),
        single_line=("site", "local_part", "label"),
    ),
    Case(
        "alias selection",
        lambda w: w.owner,
        lambda w: "/aliases/selected/",
        lambda w: {"action": "off", "ids": str(w.alias.pk), "confirmed": "yes", "next": "/aliases/?q=mine"},
        ("action", "ids", "confirmed", "next"),
        single_line=("next",),
    ),
    Case(
        "alias edit",
        lambda w: w.owner,
        lambda w: f"/aliases/{w.alias.pk}/",
        lambda w: {"label": "note", "expires_on": "", "vacation_replies": ""},
        ("label", "expires_on"),
        single_line=("label",),
    ),
    Case(
        "alias search",
        lambda w: w.owner,
        lambda w: "/aliases/",
        lambda w: {"q": "mine", "sort": "newest"},
        ("q", "sort", "page"),
        method="GET",
        stateless=True,
    ),
    Case(
        "handover list search",
        lambda w: w.admin,
        lambda w: "/handover/all/",
        lambda w: {"q": "someone"},
        ("q", "page"),
        method="GET",
        stateless=True,
    ),
    Case(
        "domain create",
        lambda w: w.admin,
        lambda w: "/aliases/domains/new/",
        lambda w: {
            "name": f"d{_unique()}.example.net",
            "kind": "alias",
            "catchall_destinations": "",
            "catchall_owner_uid": "",
        },
        ("name", "kind", "catchall_destinations", "catchall_owner_uid"),
        single_line=("name", "catchall_owner_uid"),
    ),
    Case(
        "domain edit",
        lambda w: w.admin,
        lambda w: f"/aliases/domains/{w.domain.pk}/",
        lambda w: {
            "name": w.domain.name,
            "kind": "alias",
            "catchall_destinations": "",
            "catchall_owner_uid": "",
        },
        ("kind", "catchall_destinations", "catchall_owner_uid"),
        single_line=("catchall_owner_uid",),
    ),
    Case(
        "own vacation",
        lambda w: w.owner,
        lambda w: "/out-of-office/vacation/",
        _vacation,
        ("subject", "body", "internal_body", "delegate", "starts_at", "interval_days"),
        single_line=("subject", "delegate"),
    ),
    Case(
        "vacation preview",
        lambda w: w.owner,
        lambda w: "/out-of-office/vacation/preview/",
        lambda w: {"sender": "carol@remote.example", "headers": "Subject: hi"},
        ("sender", "headers"),
        stateless=True,
    ),
    Case(
        "helpdesk vacation",
        lambda w: w.helpdesk,
        lambda w: f"/out-of-office/helpdesk/{w.target.uid}/",
        _vacation,
        ("subject", "body", "delegate", "ends_at"),
        single_line=("subject", "delegate"),
    ),
    Case(
        # The same form, from the person's directory page (it returns there).
        "helpdesk vacation from the user page",
        lambda w: w.helpdesk,
        lambda w: f"/out-of-office/helpdesk/{w.target.uid}/",
        lambda w: {**_vacation(w), "next": f"/directory/users/{w.target.uid}/"},
        ("next", "subject", "body"),
        single_line=("subject",),
    ),
    Case(
        "helpdesk search",
        lambda w: w.helpdesk,
        lambda w: "/out-of-office/helpdesk/",
        lambda w: {"q": "u"},
        ("q",),
        method="GET",
        stateless=True,
    ),
    Case(
        "handover note",
        lambda w: w.owner,
        lambda w: "/handover/edit/",
        _handover,
        ("reachability", "primary_delegate", "pending_decisions", "time_zone"),
        single_line=("reachability", "primary_delegate"),
    ),
    Case(
        "directory search",
        lambda w: w.helpdesk,
        lambda w: "/directory/",
        lambda w: {"q": "u", "page": "1", "role": "end user", "state": "active", "sort": "-mail"},
        ("q", "page", "role", "state", "sort"),
        method="GET",
        stateless=True,
    ),
    Case(
        "create user",
        lambda w: w.admin,
        lambda w: "/directory/new/",
        lambda w: (
            lambda uid: {
                "uid": uid,
                "name": "New Person",
                "mail": f"{uid}@{settings.MAIL_DOMAIN}",
                "new_password": NEW_PASSWORD,
                "new_password_again": NEW_PASSWORD,
            }
        )(f"n{_unique()}"),
        ("uid", "name", "mail", "new_password"),
        single_line=("uid", "name", "mail"),
        after_accept=_remember_created,
        directory=True,
    ),
    Case(
        "reset password",
        lambda w: w.admin,
        lambda w: f"/directory/users/{w.target.uid}/password/",
        lambda w: {"new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD},
        ("new_password",),
        after_accept=_restore_target_password,
        directory=True,
    ),
    Case(
        "disable account",
        lambda w: w.admin,
        lambda w: f"/directory/users/{w.target.uid}/disable/",
        lambda w: {"reason": "Left the organisation"},
        ("reason",),
        after_accept=_restore_target_password,
        directory=True,
    ),
    Case(
        "suspend sender",
        lambda w: w.admin,
        lambda w: f"/directory/users/{w.target.uid}/suspend/",
        lambda w: {"reason": "Phishing from this account", "until": ""},
        ("reason", "until"),
        after_accept=_reinstate_target,
        directory=True,
    ),
    Case(
        "sending limit",
        lambda w: w.admin,
        lambda w: "/limits/",
        lambda w: {"scope": "domain", "name": f"l{_unique()}.example.org", "recipients_per_hour": "10"},
        ("scope", "name", "messages_per_hour", "recipients_per_hour", "recipients_per_day", "recipients_per_message"),
        single_line=("name",),
    ),
    Case(
        "audit filter",
        lambda w: w.admin,
        lambda w: "/audit/",
        lambda w: {"actor": "", "target": "", "action": "", "since": "", "until": "", "sign_ins": "on"},
        ("actor", "target", "action", "since", "until", "sign_ins"),
        method="GET",
        stateless=True,
    ),
    Case(
        "second factor code",
        lambda w: w.admin,
        lambda w: "/second-factor/verify/",
        lambda w: {"code": _fresh_recovery_code(w.admin)},
        ("code",),
    ),
    Case(
        "delivery trail, own mail",
        lambda w: w.owner,
        lambda w: "/trail/",
        lambda w: {"q": w.owner.directory_user.mail, "status": "", "since": "", "until": ""},  # type: ignore[attr-defined]
        ("q", "status", "since", "until", "page"),
        method="GET",
        stateless=True,
    ),
    Case(
        "delivery trail, staff search",
        lambda w: w.helpdesk,
        lambda w: "/trail/",
        lambda w: {"q": "someone@remote.example", "status": "bounced", "since": "2026-01-01T00:00", "until": ""},
        ("q", "status", "since", "until", "page"),
        method="GET",
        stateless=True,
    ),
    Case(
        "explain an address, own",
        lambda w: w.owner,
        lambda w: "/explain/",
        lambda w: {"address": w.owner.directory_user.mail},  # type: ignore[attr-defined]
        ("address",),
        single_line=("address",),
        method="GET",
        stateless=True,
    ),
    Case(
        "explain an address, staff",
        lambda w: w.helpdesk,
        lambda w: "/explain/",
        lambda w: {"address": "someone@remote.example"},
        ("address",),
        single_line=("address",),
        method="GET",
        stateless=True,
    ),
    # No real passkey answer here (tests/browser/test_second_factor.py makes real ones): what
    # matters is that hostile names and answers get an error, never a 500 or a row.
    Case(
        "new passkey",
        lambda w: w.owner,
        lambda w: "/second-factor/passkeys/new/",
        lambda w: {"name": "My key", "credential": '{"id": "AAAA", "type": "public-key", "response": {}}'},
        ("name", "credential"),
        stateless=True,
    ),
    # Alias activity: block a sender for one alias or all of one's addresses; admins for everyone.
    Case(
        "alias block",
        lambda w: w.owner,
        lambda w: f"/activity/aliases/{w.alias.pk}/block/",
        lambda w: {"sender": f"pest{_unique()}@nuisance.example", "kind": "sender", "scope": "alias"},
        ("sender", "kind", "scope"),
        single_line=("sender",),
    ),
    Case(
        "account block",
        lambda w: w.owner,
        lambda w: "/activity/blocks/",
        lambda w: {"sender": f"d{_unique()}.example", "kind": "domain", "scope": "account"},
        ("sender", "kind", "scope"),
        single_line=("sender",),
    ),
    Case(
        "organisation block",
        lambda w: w.admin,
        lambda w: "/activity/organisation/",
        lambda w: {"sender": f"spam{_unique()}@junk.example", "kind": "sender", "scope": "organisation"},
        ("sender", "kind", "scope"),
        single_line=("sender",),
    ),
    Case(
        "new API token",
        lambda w: w.owner,
        lambda w: "/tokens/",
        lambda w: {"name": "Bitwarden", "scope": "manage", "expires_on": ""},
        ("name", "scope", "expires_on"),
        single_line=("name",),
        ok_status=200,  # the page shows the new token once instead of redirecting
    ),
    Case(
        "API token search",
        lambda w: w.admin,
        lambda w: "/tokens/all/",
        lambda w: {"q": "someone"},
        ("q", "page"),
        method="GET",
        stateless=True,
    ),
    # Hostile files themselves: tests/test_bulk_import.py (HOSTILE_FILES).
    Case(
        "csv import",
        lambda w: w.admin,
        lambda w: "/bulk/",
        lambda w: {
            "kind": "aliases",
            "file": SimpleUploadedFile(  # type: ignore[dict-item]
                "a.csv", f"address,owner\nok{_unique()}@{w.domain.name},{w.target.uid}\n".encode(), "text/csv"
            ),
        },
        ("kind", "file"),
    ),
    # The export writes an audit event, so only the refused values are checked for changes.
    Case(
        "csv export",
        lambda w: w.admin,
        lambda w: "/bulk/export/",
        lambda w: {"what": "aliases"},
        ("what",),
        stateless=True,
    ),
]


def _send(client: Client, method: str, url: str, data: dict[str, str]):
    return client.get(url, data) if method == "GET" else client.post(url, data)


def test_every_form_of_the_project_is_in_the_corpus() -> None:
    # A new form page must be added to CASES (or to this list with the reason it has none).

    without_fields = {
        "home",
        "accounts:login",  # tests/test_sign_in.py::test_hostile_sign_in_input_is_refused_plainly
        "accounts:logout",
        "directory:detail",
        "directory:reinstate",
        "aliases:list",  # GET search: "alias search"
        "aliases:create",  # per kind: "custom alias", "site alias"
        "aliases:detail",  # "alias edit"
        "aliases:disable",
        "aliases:enable",
        "aliases:delete",
        "aliases:bulk",  # "alias selection"
        "aliases:domains",
        "aliases:domain_create",
        "aliases:domain_edit",
        "aliases:domain_delete",  # a confirmation: no fields
        "aliases:publication",
        "aliases:publication_publish",
        "outofoffice:helpdesk_clear",
        "outofoffice:helpdesk_preview",  # the same PreviewForm as "vacation preview"
        "handover:mine",
        "handover:delete",
        "handover:shared",
        "handover:all",  # GET search: "handover list search"
        "handover:detail",
        "handover:print",
        "mfa:security",
        "mfa:enrol",
        "mfa:totp_add",  # the same CodeForm as "second factor code"
        "mfa:totp_remove",
        "mfa:passkey_remove",
        "mfa:recovery_codes",
        "mfa:reset",
        "limits:edit",  # the same SendingLimitForm as "sending limit"
        "limits:delete",
        "limits:senders",
        "trail:detail",  # no fields
        "activity:unblock",
        "activity:leak_dismiss",
        "activity:leak_block",
        "activity:organisation_unblock",
        "tokens:revoke",  # a confirmation: no fields
        "tokens:staff_revoke",
        "tokens:help",
        # The API's bodies and queries go through the same forms: tests/test_api_hostile.py
        *(name for name in ALL_URLS if name.split(":")[0] in ("api", "simplelogin", "addy")),
        "bulk:job",
        "bulk:apply",
        "bulk:passwords",
    }
    covered_paths = {
        "accounts:password",
        "outofoffice:vacation",
        "outofoffice:preview",
        "outofoffice:helpdesk",
        "outofoffice:helpdesk_user",
        "handover:edit",
        "directory:list",
        "directory:create",
        "directory:reset_password",
        "directory:disable",
        "directory:suspend",
        "audit:log",
        "audit:export",  # the audit filter's form; its nasty values: tests/test_console_audit.py
        "mfa:verify",
        "mfa:passkey_add",
        "limits:list",
        "trail:search",
        "explain:explain",
        "activity:alias_block",
        "activity:blocks",
        "activity:organisation",
        "tokens:list",
        "tokens:all",
        "bulk:index",
        "bulk:export",
    }
    assert set(ALL_URLS) - without_fields - covered_paths == set()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_nasty_values_get_a_clear_error_or_are_handled_and_refused_ones_change_nothing(
    world: World, case: Case
) -> None:
    client, url = case.client(world), case.url(world)
    # The valid submission is accepted: the attacks below reach the field checks they aim at.
    valid = case.valid(world)
    response = _send(client, case.method, url, valid)
    assert response.status_code in (200, 302), response.status_code
    if not case.stateless:
        assert response.status_code == case.ok_status, (
            f"{case.name}: the valid submission was refused: {response.content[:3000]}"
        )
        assert b'class="error"' not in response.content, f"{case.name}: the valid submission was refused"
        case.after_accept(world, valid)

    for name in case.attack:
        for value in NASTY:
            data = {**case.valid(world), name: value}
            before = world.state(case.directory)
            response = _send(client, case.method, url, data)  # a 500 raises here
            shown = repr(value[:40])
            assert response.status_code in (200, 302), f"{case.name} {name}={shown}: {response.status_code}"
            shown_again = response.status_code == 200 and (
                case.ok_status != 200 or b'class="error"' in response.content
            )
            if case.stateless or shown_again:
                assert world.state(case.directory) == before, f"{case.name}: {name}={shown} refused, yet changed"
                if not case.stateless:
                    assert b"error" in response.content.lower(), f"{case.name} {name}={shown}: no error shown"
                continue
            assert response.status_code == case.ok_status, f"{case.name} {name}={shown}: no error shown"
            # Accepted: only harmless values, stored as typed (not cut into something else).
            assert "\x00" not in value, f"{case.name}: NUL accepted in {name}"
            if name in case.single_line:
                assert not LINE_BREAKS.search(value.strip()), f"{case.name}: a line break accepted in {name}"
            assert value is not MEGABYTE, f"{case.name}: a megabyte accepted in {name}"
            case.after_accept(world, data)


def test_bytes_that_are_not_utf8_in_a_form_post_are_refused_plainly(world: World) -> None:
    before = world.state()
    for url, client in (("/aliases/new/custom/", world.owner), ("/out-of-office/vacation/", world.owner)):
        response = client.post(
            url,
            data=b"local_part=%FF%FE%00x&subject=%C3%28&body=%ED%A0%80",
            content_type="application/x-www-form-urlencoded",
        )
        assert response.status_code in (200, 400)
    assert world.state() == before


# --- the responder ------------------------------------------------------------------------------

NASTY_MESSAGES = [
    b"",
    b"\x00\x00\x00",
    b"no colon header line\r\n\r\nbody\r\n",
    b"Subject: \xff\xfe\xfd latin1 \xe9\r\nFrom: \xc3\x28@x\r\nTo: {to}\r\n\r\n\xff body\r\n",
    b"Subject: hi\r\nBcc: all@example.org\r\nTo: {to}\r\n\r\nbody\r\n",
    b"Subject: =?utf-8?q?x=0D=0ABcc:_all@example.org?=\r\nTo: {to}\r\n\r\nbody\r\n",
    b"Message-ID: <a@b>\r\nBcc: injected@example.org>\r\nTo: {to}\r\nSubject: x\r\n\r\nbody\r\n",
    b"Message-ID: <x\x00y@b>\r\nTo: {to}\r\nSubject: \xe2\x80\xae\xe2\x80\x8bbidi\r\n\r\nbody\r\n",
    # A megabyte of Subject, folded as Postfix hands long lines over (never more than 998 a line).
    b"To: {to}\r\nSubject: " + (b"S" * 900 + b"\r\n ") * 1100 + b"end\r\n\r\nbody\r\n",
    b"To: {to}\r\n" + b"X-Fold: a\r\n " * 50_000 + b"\r\n\r\nbody\r\n",
    # Every byte value in a megabyte of body, in lines as Postfix hands them over.
    b"To: {to}\r\nSubject: x\r\n\r\n" + (bytes(b for b in range(256) if b not in b"\r\n") + b"\r\n") * 4000,
    b"To: *)(uid=*))(|(uid=*, {to}\r\nFrom: cn=admin,dc=example,dc=org\r\nSubject: x\r\n\r\nbody\r\n",
]


def test_nasty_mail_through_the_responder_gets_a_status_and_never_an_injected_reply(
    transactional_db, tmp_path, settings
):
    outside = OutsideWorld(port=free_port(), path=tmp_path / "captured").start()
    settings.VACATION_SMTP_PORT = outside.port
    # A port picked now, not at the start of the run: by now a loopback connection (to
    # PostgreSQL, say) may be using the run's RESPONDER_PORT as its source port.
    port = free_port()
    responder = ResponderThread(port=port).start()
    user = "victor@example.org"
    now = timezone.now()
    vacation = VacationReply.objects.create(
        uid="victor",
        address=user,
        enabled=True,
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(days=3),
        subject="Away",
        body="I am away.",
        interval_days=1,
    )
    stored = repr(VacationReply.objects.filter(pk=vacation.pk).values().get())
    try:
        for n, raw in enumerate(NASTY_MESSAGES):
            sender = f"sender{n}@remote.example"
            with smtplib.LMTP(settings.RESPONDER_HOST, port) as lmtp:
                lmtp.ehlo_or_helo_if_needed()
                lmtp.mail(sender)
                lmtp.rcpt(routing_address(user))
                code, _ = lmtp.data(raw.replace(b"{to}", user.encode()))
            assert code in (250, 451), (n, code)  # never 5xx: Postfix would bounce the copy to the sender
        # Still running, and still answering properly.
        with smtplib.LMTP(settings.RESPONDER_HOST, port) as lmtp:
            lmtp.ehlo_or_helo_if_needed()
            lmtp.mail("last@remote.example")
            lmtp.rcpt(routing_address(user))
            assert lmtp.data(f"To: {user}\r\nSubject: still there?\r\n\r\nhello\r\n".encode())[0] == 250
    finally:
        responder.stop()
        outside.stop()
    replies = [email.message_from_bytes(raw, policy=default) for raw in outside.messages()]
    assert any(reply["X-Envelope-To"] == "<last@remote.example>" for reply in replies)
    for reply in replies:
        names = {name.lower() for name in reply.keys()}
        assert not names & {"bcc", "cc", "resent-to", "reply-to"}, names
        assert len(reply.get_all("To")) == 1 and reply["Subject"] == "Auto: Away"
        assert "injected" not in reply.as_string() and "all@example.org" not in reply.as_string()
    assert repr(VacationReply.objects.filter(pk=vacation.pk).values().get()) == stored
