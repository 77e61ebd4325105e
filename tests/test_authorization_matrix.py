"""Who may do what, for every URL of the project.

Every URL pattern is found by walking the resolver; each must have an explicit entry in
MATRIX saying, for GET and POST, what each kind of visitor gets. A new view without a
decision here fails the suite (test_every_url_has_a_decision and its own parametrised case).

Visitors: anonymous; the OWNER of the objects in the URL (an end user); OTHER, an unrelated
end user; DELEGATE, the primary delegate named in the owner's handover note; TOPIC, a
delegate for one topic of that note; HELPDESK; ADMIN (both with a second factor, given);
PENDING, an admin who gave the right password but not yet the second factor.
"""

import json
import secrets
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from accounts import directory
from activity.models import LeakFlag, SenderBlock
from aliases.models import Alias, Domain
from api.models import ApiToken
from api.services import digest_of
from bulk.models import ImportJob
from handover.models import HandoverNote, TopicDelegate
from limits.models import SendingLimit
from mfa import services
from mfa.models import Passkey
from tests.conftest import DEMO_PASSWORD, give_second_factor, sign_in_client
from trail.models import Delivery

pytestmark = pytest.mark.django_db

ANON, OTHER, DELEGATE, TOPIC = "anonymous", "other", "delegate", "topic delegate"
HELPDESK, ADMIN, OWNER = "helpdesk", "admin", "owner"
PENDING = "password given, second factor not yet"
# The owner goes last: an allowed POST may delete the object, which must not hide how the
# others were treated.
VISITORS = (ANON, OTHER, DELEGATE, TOPIC, HELPDESK, ADMIN, PENDING, OWNER)

OK = "ok"  # 200, or a redirect somewhere other than the sign-in page
LOGIN = "login"  # redirect to the sign-in page
DENIED = "403"
MISSING = "404"
NOT_ALLOWED = "405"
SECOND_FACTOR = "second factor"  # redirect to the page asking for the second factor


def each(
    anon: str,
    owner: str,
    other: str,
    helpdesk: str,
    admin: str,
    delegate: str | None = None,
    pending: str | None = None,
) -> dict[str, str]:
    return {
        ANON: anon,
        OWNER: owner,
        OTHER: other,
        DELEGATE: other if delegate is None else delegate,
        TOPIC: other if delegate is None else delegate,
        HELPDESK: helpdesk,
        ADMIN: admin,
        # Until the second factor is given, every page but the public ones leads to it.
        PENDING: (OK if anon == OK else SECOND_FACTOR) if pending is None else pending,
    }


PUBLIC = each(OK, OK, OK, OK, OK)
SIGNED_IN = each(LOGIN, OK, OK, OK, OK)
STAFF = each(LOGIN, DENIED, DENIED, OK, OK)
ADMINS = each(LOGIN, DENIED, DENIED, DENIED, OK)
# Only the owner; for everyone else the object does not exist (admins included: they manage
# domains, not other people's aliases).
OWN_ALIAS = each(LOGIN, OK, MISSING, MISSING, MISSING)
# An alias action that is POST only; the ownership check comes before the method check.
OWN_ALIAS_GET_OF_POST_ONLY = each(LOGIN, NOT_ALLOWED, MISSING, MISSING, MISSING)
# A handover note: its author, the delegates it names, and admins; helpdesk has no access.
HANDOVER_NOTE = each(LOGIN, OK, MISSING, MISSING, OK, delegate=OK)
# The alias API takes a token and nothing else: a web session (any role, pending or not) is
# not signed in there. Who gets what with which token: API_MATRIX below.
UNAUTHENTICATED = "401"
TOKEN_ONLY = each(*[UNAUTHENTICATED] * 5, pending=UNAUTHENTICATED)
API_GET_OF_POST_ONLY = each(*[NOT_ALLOWED] * 5, pending=NOT_ALLOWED)
API_ROOT = each(*[MISSING] * 5, pending=MISSING)
# A personal token belongs to its owner; admins manage everyone's, helpdesk nobody's.
OWN_TOKEN = each(LOGIN, OK, MISSING, MISSING, MISSING)

MATRIX: dict[str, dict[str, dict[str, str]]] = {
    "home": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    "accounts:login": {"GET": PUBLIC, "POST": PUBLIC},
    # Signing out works for anyone and ends on the sign-in page.
    "accounts:logout": {
        "GET": each(NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED, pending=NOT_ALLOWED),
        "POST": each(LOGIN, LOGIN, LOGIN, LOGIN, LOGIN, pending=LOGIN),
    },
    "accounts:password": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    "directory:list": {"GET": STAFF, "POST": STAFF},
    "directory:create": {"GET": ADMINS, "POST": ADMINS},
    "directory:detail": {"GET": STAFF, "POST": STAFF},
    "directory:reset_password": {"GET": ADMINS, "POST": ADMINS},
    "directory:disable": {"GET": ADMINS, "POST": ADMINS},
    "directory:suspend": {"GET": ADMINS, "POST": ADMINS},
    "directory:reinstate": {"GET": each(LOGIN, DENIED, DENIED, DENIED, NOT_ALLOWED), "POST": ADMINS},
    "aliases:list": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    "aliases:create": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    "aliases:detail": {"GET": OWN_ALIAS, "POST": OWN_ALIAS},
    "aliases:disable": {"GET": OWN_ALIAS_GET_OF_POST_ONLY, "POST": OWN_ALIAS},
    "aliases:enable": {"GET": OWN_ALIAS_GET_OF_POST_ONLY, "POST": OWN_ALIAS},
    "aliases:delete": {"GET": OWN_ALIAS, "POST": OWN_ALIAS},
    # Several of one's own aliases at once; an id of someone else's is 404 (see the test below).
    "aliases:bulk": {"GET": each(LOGIN, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED), "POST": SIGNED_IN},
    "aliases:domains": {"GET": ADMINS, "POST": ADMINS},
    "aliases:domain_create": {"GET": ADMINS, "POST": ADMINS},
    "aliases:domain_edit": {"GET": ADMINS, "POST": ADMINS},
    "aliases:domain_delete": {"GET": ADMINS, "POST": ADMINS},
    "aliases:publication": {"GET": ADMINS, "POST": ADMINS},
    # require_POST is the outer decorator: a GET is refused before anyone is asked to sign in.
    "aliases:publication_publish": {
        "GET": each(NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED),
        "POST": ADMINS,
    },
    "outofoffice:vacation": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    "outofoffice:preview": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    "outofoffice:helpdesk": {"GET": STAFF, "POST": STAFF},
    "outofoffice:helpdesk_user": {"GET": STAFF, "POST": STAFF},
    "outofoffice:helpdesk_clear": {"GET": STAFF, "POST": STAFF},  # GET: the confirmation page
    "outofoffice:helpdesk_preview": {"GET": STAFF, "POST": STAFF},
    "handover:mine": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    "handover:edit": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    "handover:delete": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    "handover:shared": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    "handover:all": {"GET": ADMINS, "POST": ADMINS},
    "handover:detail": {"GET": HANDOVER_NOTE, "POST": HANDOVER_NOTE},
    "handover:print": {"GET": HANDOVER_NOTE, "POST": HANDOVER_NOTE},
    "audit:log": {"GET": ADMINS, "POST": ADMINS},
    "audit:export": {"GET": ADMINS, "POST": ADMINS},
    "mfa:security": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    # The pending visitor answers here. End users without a factor are sent to mfa:security.
    "mfa:verify": {"GET": each(LOGIN, OK, OK, OK, OK, pending=OK), "POST": each(LOGIN, OK, OK, OK, OK, pending=OK)},
    # Enrolment while pending is for people without any factor; the pending admin has one.
    "mfa:enrol": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    "mfa:totp_add": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    "mfa:passkey_add": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    # POST only. End users have no app to remove (404); staff may not remove their last factor.
    "mfa:totp_remove": {
        "GET": each(LOGIN, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED),
        "POST": each(LOGIN, MISSING, MISSING, OK, OK),
    },
    # A passkey of the owner: nobody else sees it.
    "mfa:passkey_remove": {
        "GET": each(LOGIN, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED),
        "POST": each(LOGIN, OK, MISSING, MISSING, MISSING),
    },
    "mfa:recovery_codes": {
        "GET": each(LOGIN, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED),
        "POST": SIGNED_IN,
    },
    # Helpdesk may reset an end user's second factor (the owner is one), admins anyone's.
    "mfa:reset": {"GET": STAFF, "POST": STAFF},
    # Outbound limits and the heaviest senders: admins only.
    "limits:list": {"GET": ADMINS, "POST": ADMINS},
    "limits:edit": {"GET": ADMINS, "POST": ADMINS},
    "limits:delete": {"GET": each(LOGIN, DENIED, DENIED, DENIED, NOT_ALLOWED), "POST": ADMINS},
    "limits:senders": {"GET": ADMINS, "POST": ADMINS},
    # Delivery trail: everyone signed in searches (end users see their own addresses' mail only,
    # tests/test_trail_views.py); a record of the owner's mail is theirs and staff's, 404 to others.
    "trail:search": {"GET": SIGNED_IN, "POST": each(NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED)},
    "trail:detail": {
        "GET": each(LOGIN, OK, MISSING, OK, OK),
        "POST": each(NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED),
    },
    # Explain an address: everyone signed in (an end user's own addresses only; another address gets
    # the answer of one that does not exist, tests/test_explain.py). GET only.
    "explain:explain": {
        "GET": SIGNED_IN,
        "POST": each(NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED),
    },
    # Alias activity and sender blocks: a person's own blocks and flags; organisation-wide ones for admins.
    "activity:blocks": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    "activity:alias_block": {"GET": OWN_ALIAS, "POST": OWN_ALIAS},
    "activity:unblock": {"GET": OWN_ALIAS, "POST": OWN_ALIAS},
    "activity:leak_dismiss": {"GET": OWN_ALIAS, "POST": OWN_ALIAS},
    "activity:leak_block": {"GET": OWN_ALIAS, "POST": OWN_ALIAS},
    "activity:organisation": {"GET": ADMINS, "POST": ADMINS},
    "activity:organisation_unblock": {
        "GET": each(NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED),
        "POST": ADMINS,
    },
    # The alias API (api/): the OpenAPI description is public; everything else needs a token.
    "api:openapi-json": {"GET": PUBLIC, "POST": PUBLIC},
    "api:api-root": {"GET": API_ROOT, "POST": API_ROOT},
    "api:token": {"GET": TOKEN_ONLY, "POST": API_GET_OF_POST_ONLY},
    "api:aliases": {"GET": TOKEN_ONLY, "POST": TOKEN_ONLY},
    "api:alias_create": {"GET": TOKEN_ONLY, "POST": TOKEN_ONLY},
    "api:alias": {"GET": TOKEN_ONLY, "POST": API_GET_OF_POST_ONLY},
    "api:alias_update": {"GET": TOKEN_ONLY, "POST": API_GET_OF_POST_ONLY},
    "api:alias_delete": {"GET": TOKEN_ONLY, "POST": API_GET_OF_POST_ONLY},
    "api:alias_enable": {"GET": API_GET_OF_POST_ONLY, "POST": TOKEN_ONLY},
    "api:alias_disable": {"GET": API_GET_OF_POST_ONLY, "POST": TOKEN_ONLY},
    "api:suggestion": {"GET": TOKEN_ONLY, "POST": API_GET_OF_POST_ONLY},
    "api:domains": {"GET": TOKEN_ONLY, "POST": API_GET_OF_POST_ONLY},
    "simplelogin:api-root": {"GET": API_ROOT, "POST": API_ROOT},
    "simplelogin:random_new": {"GET": API_GET_OF_POST_ONLY, "POST": TOKEN_ONLY},
    "simplelogin:random_new_v3": {"GET": API_GET_OF_POST_ONLY, "POST": TOKEN_ONLY},
    "simplelogin:options": {"GET": TOKEN_ONLY, "POST": API_GET_OF_POST_ONLY},
    "addy:api-root": {"GET": API_ROOT, "POST": API_ROOT},
    "addy:create": {"GET": API_GET_OF_POST_ONLY, "POST": TOKEN_ONLY},
    "tokens:list": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    "tokens:revoke": {"GET": OWN_TOKEN, "POST": OWN_TOKEN},
    "tokens:all": {"GET": ADMINS, "POST": ADMINS},
    # Admins revoke anyone's token (the owner is an end user; tests/test_api_pages.py: a
    # helpdesk member is refused even on an end user's).
    "tokens:staff_revoke": {"GET": ADMINS, "POST": ADMINS},
    "tokens:help": {"GET": SIGNED_IN, "POST": SIGNED_IN},
    # CSV import and export: admins only; an import is its admin's (another admin gets 404,
    # tests/test_bulk_import.py). The actions are POST only, checked after the role.
    "bulk:index": {"GET": ADMINS, "POST": ADMINS},
    "bulk:job": {"GET": ADMINS, "POST": ADMINS},
    "bulk:apply": {"GET": each(LOGIN, DENIED, DENIED, DENIED, NOT_ALLOWED), "POST": ADMINS},
    "bulk:passwords": {"GET": each(LOGIN, DENIED, DENIED, DENIED, NOT_ALLOWED), "POST": ADMINS},
    "bulk:export": {"GET": each(LOGIN, DENIED, DENIED, DENIED, NOT_ALLOWED), "POST": ADMINS},
}


def url_patterns() -> Iterator[tuple[str, URLPattern]]:
    """(namespaced name, pattern) of every URL the project serves, however deeply included."""

    def walk(patterns: list, namespace: str) -> Iterator[tuple[str, URLPattern]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                yield from walk(pattern.url_patterns, inner)
            else:
                yield f"{namespace}{pattern.name or pattern.pattern}", pattern

    yield from walk(get_resolver().url_patterns, "")


ALL_URLS = sorted(name for name, _ in url_patterns())


def test_every_url_has_a_decision() -> None:
    undecided = [name for name in ALL_URLS if name not in MATRIX]
    assert undecided == [], f"add these URLs to MATRIX with who may GET and POST them: {undecided}"
    gone = [name for name in MATRIX if name not in ALL_URLS]
    assert gone == [], f"MATRIX lists URLs that no longer exist: {gone}"


def test_url_names_are_unique() -> None:
    # Two patterns under one name would let the second escape the matrix.
    assert len(ALL_URLS) == len(set(ALL_URLS))


# --- visitors and their objects ---------------------------------------------------------------


@pytest.fixture(scope="module")
def people() -> Iterator[dict[str, directory.DirectoryUser]]:
    """One directory user per role, created once for the module (sign-in happens per test)."""
    made = {}
    roles = {OWNER: None, OTHER: None, DELEGATE: None, TOPIC: None, HELPDESK: settings.LDAP_HELPDESK_GROUP_DN}
    roles[ADMIN] = settings.LDAP_ADMIN_GROUP_DN
    roles[PENDING] = settings.LDAP_ADMIN_GROUP_DN
    for visitor, group in roles.items():
        uid = f"m{visitor[:3].strip(' ,')}{secrets.token_hex(3)}"
        made[visitor] = directory.create_user(
            uid=uid, cn=f"Matrix {visitor}", sn=visitor, mail=f"{uid}@{settings.MAIL_DOMAIN}", password=DEMO_PASSWORD
        )
        if group:
            directory.add_to_group(uid, group)
    yield made
    for user in made.values():
        directory.delete_user(user.uid)


def _clients(people: dict[str, directory.DirectoryUser]) -> dict[str, Client]:
    clients = {ANON: Client()}
    for visitor, user in people.items():
        client = Client()
        if visitor == PENDING:
            response = client.post("/accounts/sign-in/", {"username": user.uid, "password": DEMO_PASSWORD})
            assert response["Location"] == reverse("mfa:verify"), f"{visitor} was not asked for a second factor"
            if not services.has_second_factor(User.objects.get(username=user.uid)):
                give_second_factor(user.uid)
        else:
            sign_in_client(client, user.uid)
        clients[visitor] = client
    return clients


def _objects(people: dict[str, directory.DirectoryUser]) -> dict[str, object]:
    owner = User.objects.get(username=people[OWNER].uid)
    domain, _ = Domain.objects.get_or_create(name=settings.ALIAS_DOMAIN, defaults={"is_alias_domain": True})
    alias = Alias.objects.create(owner=owner, local_part=f"matrix{secrets.token_hex(3)}", domain=domain)
    now = timezone.now()
    note = HandoverNote.objects.create(
        author=owner, starts_at=now, ends_at=now + timedelta(days=7), primary_delegate_uid=people[DELEGATE].uid
    )
    TopicDelegate.objects.create(note=note, topic="Invoices", delegate_uid=people[TOPIC].uid)
    token = ApiToken.objects.create(owner=owner, name="matrix", digest=secrets.token_hex(32), display_prefix="mat_x")
    return {
        "alias": alias,
        "domain": domain,
        "note": note,
        "uid": people[OWNER].uid,
        "mail": people[OWNER].mail,
        "token": token,
        # An import of the ADMIN visitor (the owner's when a test has no admin visitor).
        "import": ImportJob.objects.create(
            kind="users", created_by=User.objects.get(username=people.get(ADMIN, people[OWNER]).uid)
        ),
    }


def _arguments(name: str, pattern: URLPattern, objects: dict[str, object]) -> dict[str, object]:
    """The URL's arguments, pointing at objects of the OWNER."""
    kwargs: dict[str, object] = {}
    for parameter in pattern.pattern.converters:
        if parameter == "uid":
            kwargs["uid"] = objects["uid"]
        elif parameter == "kind":
            kwargs["kind"] = "custom"
        elif parameter == "pk" and name.startswith("aliases:domain"):
            kwargs["pk"] = objects["domain"].pk
        elif parameter == "pk" and name.startswith("activity:"):
            kwargs["pk"] = _activity_object(name, objects["alias"]).pk  # type: ignore[arg-type]
        elif parameter == "pk" and name.startswith("aliases:"):
            kwargs["pk"] = objects["alias"].pk
        elif parameter == "pk" and name.startswith("handover:"):
            kwargs["pk"] = objects["note"].pk
        elif parameter == "pk" and name.startswith("tokens:"):
            kwargs["pk"] = objects["token"].pk
        elif parameter == "alias_id":
            kwargs["alias_id"] = objects["alias"].pk
        elif parameter == "pk" and name.startswith("bulk:"):
            kwargs["pk"] = objects["import"].pk  # an import of the ADMIN visitor
        elif parameter == "pk" and name.startswith("limits:"):
            limit, _ = SendingLimit.objects.get_or_create(
                scope="person", name=objects["uid"], defaults={"recipients_per_hour": 9}
            )
            kwargs["pk"] = limit.pk
        elif parameter == "pk" and name == "trail:detail":
            kwargs["pk"] = Delivery.objects.create(
                logged_at=timezone.now(), host="matrix", recipient=objects["mail"], status="sent"
            ).pk
        elif parameter == "pk" and name.startswith("tokens:"):
            kwargs["pk"] = objects["token"].pk
        elif parameter == "alias_id":
            kwargs["alias_id"] = objects["alias"].pk
        elif parameter == "pk" and name.startswith("bulk:"):
            kwargs["pk"] = objects["import"].pk  # an import of the ADMIN visitor
        elif parameter == "pk" and name == "mfa:passkey_remove":
            # Made only here: a passkey would make every other URL ask the owner for it.
            owner = User.objects.get(username=objects["uid"])
            kwargs["pk"] = Passkey.objects.create(
                user=owner, name=f"key {secrets.token_hex(3)}", credential_id=secrets.token_urlsafe(16), public_key=b"k"
            ).pk
        else:
            pytest.fail(f"{name}: say which object <{parameter}> points at in _arguments()")
    return kwargs


def _activity_object(name: str, alias: Alias) -> Alias | SenderBlock | LeakFlag:
    """The OWNER's alias, block or leak flag (an organisation-wide block for its admin URL)."""
    if name == "activity:alias_block":
        return alias
    if name == "activity:organisation_unblock":
        return SenderBlock.objects.create(scope="organisation", sender=f"o{secrets.token_hex(3)}.example")
    if name == "activity:unblock":
        return SenderBlock.objects.get_or_create(
            scope="alias", owner=alias.owner, alias=alias, sender="x@pest.example"
        )[0]
    if name.startswith("activity:leak_"):
        return LeakFlag.objects.get_or_create(
            alias=alias,
            registrable_domain="pest.example",
            defaults={"sender_domain": "mx.pest.example", "flagged_at": timezone.now()},
        )[0]
        domain = f"pest{secrets.token_hex(3)}.example"  # one flag per alias and domain
        now = timezone.now()
        return LeakFlag.objects.create(alias=alias, registrable_domain=domain, sender_domain=domain, flagged_at=now)
    pytest.fail(f"{name}: say which object <pk> points at in _activity_object()")


def _outcome(response) -> str:
    status = response.status_code
    if status in (301, 302, 303) and response["Location"].startswith(reverse("mfa:verify")):
        return SECOND_FACTOR
    if status in (301, 302, 303):
        return LOGIN if response["Location"].startswith(reverse("accounts:login")) else OK
    if status == 200:
        return OK
    if status in (401, 403, 404, 405):
        return str(status)
    return f"unexpected {status}"


@pytest.mark.parametrize("name", ALL_URLS)
def test_each_visitor_gets_what_the_matrix_says(name, people) -> None:
    assert name in MATRIX, f"{name} has no authorisation decision in MATRIX"
    pattern = dict(url_patterns())[name]
    clients = _clients(people)
    objects = _objects(people)
    url = reverse(name, kwargs=_arguments(name, pattern, objects))
    seen: dict[str, dict[str, str]] = {"GET": {}, "POST": {}}
    for visitor in VISITORS:
        seen["GET"][visitor] = _outcome(clients[visitor].get(url))
        seen["POST"][visitor] = _outcome(clients[visitor].post(url, {}))
    expected = {method: dict(MATRIX[name][method]) for method in ("GET", "POST")}
    assert seen == expected, url


def test_an_alias_of_another_user_stays_untouched_by_every_refused_visitor(people) -> None:
    # The matrix says 404; this says nothing changed behind the 404.
    clients = _clients(people)
    alias = _objects(people)["alias"]
    for visitor in (OTHER, DELEGATE, TOPIC, HELPDESK, ADMIN):
        for action in ("disable", "delete"):
            clients[visitor].post(reverse(f"aliases:{action}", kwargs={"pk": alias.pk}), {})
        clients[visitor].post(reverse("aliases:detail", kwargs={"pk": alias.pk}), {"label": "mine now"})
        selected = {"action": "delete", "ids": [alias.pk], "confirmed": "yes"}
        assert clients[visitor].post(reverse("aliases:bulk"), selected).status_code == 404, visitor
    alias.refresh_from_db()
    assert alias.enabled and alias.label == ""


def test_nobody_blocks_on_or_unblocks_from_another_persons_alias(people) -> None:
    clients = _clients(people)
    alias = _objects(people)["alias"]
    block = SenderBlock.objects.create(scope="alias", owner=alias.owner, alias=alias, sender="x@pest.example")
    flag = LeakFlag.objects.create(
        alias=alias, registrable_domain="pest.example", sender_domain="pest.example", flagged_at=timezone.now()
    )
    for visitor in (OTHER, DELEGATE, TOPIC, HELPDESK, ADMIN):
        client = clients[visitor]
        data = {"sender": "friend@example.net", "kind": "sender", "scope": "alias"}
        assert client.post(reverse("activity:alias_block", kwargs={"pk": alias.pk}), data).status_code == 404
        assert client.post(reverse("activity:unblock", kwargs={"pk": block.pk}), {}).status_code == 404
        assert client.post(reverse("activity:leak_dismiss", kwargs={"pk": flag.pk}), {}).status_code == 404
        assert client.post(reverse("activity:leak_block", kwargs={"pk": flag.pk}), {}).status_code == 404
        assert "x@pest.example" not in clients[visitor].get(reverse("activity:blocks")).content.decode()
    assert list(SenderBlock.objects.filter(alias=alias).values_list("sender", flat=True)) == ["x@pest.example"]
    flag.refresh_from_db()
    assert flag.dismissed_at is None


# --- the alias API: who gets what with which token ---------------------------------------------

NO_TOKEN, REVOKED, EXPIRED, READ_ONLY = "no token", "revoked token", "expired token", "read-only token"
OTHERS_TOKEN, SUSPENDED, DISABLED = "another person's token", "suspended person's token", "disabled person's token"
# The owner's token with the manage scope goes last: a DELETE removes the alias.
TOKEN_VISITORS = (NO_TOKEN, REVOKED, EXPIRED, READ_ONLY, OTHERS_TOKEN, SUSPENDED, DISABLED, OWNER)


def with_token(read_only: str, others: str) -> dict[str, str]:
    return {
        NO_TOKEN: UNAUTHENTICATED,
        REVOKED: UNAUTHENTICATED,
        EXPIRED: UNAUTHENTICATED,
        DISABLED: UNAUTHENTICATED,
        SUSPENDED: DENIED,
        READ_ONLY: read_only,
        OTHERS_TOKEN: others,
        OWNER: OK,
    }


API_READS = with_token(OK, OK)  # each token sees its own owner's things
API_WRITES = with_token(DENIED, OK)  # a new alias of the token's owner
API_OWN_ALIAS_READ = with_token(OK, MISSING)
API_OWN_ALIAS_WRITE = with_token(DENIED, MISSING)

# URL name -> (method, JSON body, who gets what). Every API URL but the root and the public
# OpenAPI description is here (test_every_api_url_is_in_the_token_matrix).
API_MATRIX: dict[str, tuple[str, dict[str, object] | None, dict[str, str]]] = {
    "api:token": ("GET", None, API_READS),
    "api:aliases": ("GET", None, API_READS),
    "api:alias_create": ("POST", {"kind": "random"}, API_WRITES),
    "api:alias": ("GET", None, API_OWN_ALIAS_READ),
    "api:alias_update": ("PATCH", {"note": "changed"}, API_OWN_ALIAS_WRITE),
    "api:alias_enable": ("POST", None, API_OWN_ALIAS_WRITE),
    "api:alias_disable": ("POST", None, API_OWN_ALIAS_WRITE),
    "api:alias_delete": ("DELETE", None, API_OWN_ALIAS_WRITE),
    "api:suggestion": ("GET", None, API_READS),
    "api:domains": ("GET", None, API_READS),
    "simplelogin:random_new": ("POST", {"note": "Generated by a test."}, API_WRITES),
    "simplelogin:random_new_v3": ("POST", {}, API_WRITES),
    "simplelogin:options": ("GET", None, API_READS),
    "addy:create": ("POST", {"domain": settings.ALIAS_DOMAIN, "description": "x"}, API_WRITES),
}


def test_every_api_url_is_in_the_token_matrix() -> None:
    api_urls = {name for name in ALL_URLS if name.split(":")[0] in ("api", "simplelogin", "addy")}
    assert api_urls - set(API_MATRIX) == {"api:openapi-json", "api:api-root", "simplelogin:api-root", "addy:api-root"}


@pytest.fixture(scope="module")
def token_people() -> Iterator[dict[str, directory.DirectoryUser]]:
    made = {}
    for visitor in (OWNER, OTHERS_TOKEN, SUSPENDED, DISABLED):
        uid = f"t{visitor[:3].strip(' ,')}{secrets.token_hex(3)}"
        made[visitor] = directory.create_user(
            uid=uid, cn=f"Token {visitor}", sn=visitor, mail=f"{uid}@{settings.MAIL_DOMAIN}", password=DEMO_PASSWORD
        )
    directory.set_sender_blocked(made[SUSPENDED].uid, True)  # suspended as Postfix sees it, by any tool
    directory.remove_password(made[DISABLED].uid)  # what "disable account" does
    yield made
    for user in made.values():
        directory.delete_user(user.uid)


def _tokens(people: dict[str, directory.DirectoryUser]) -> dict[str, str | None]:
    def token(uid: str, scope: str = ApiToken.Scope.MANAGE, **fields: object) -> str:
        owner, _ = User.objects.get_or_create(username=uid, defaults={"email": f"{uid}@{settings.MAIL_DOMAIN}"})
        raw = "mat_" + secrets.token_urlsafe(32)
        ApiToken.objects.create(
            owner=owner, name=scope, scope=scope, digest=digest_of(raw), display_prefix=raw[:10], **fields
        )
        return raw

    owner = people[OWNER].uid
    now = timezone.now()
    return {
        NO_TOKEN: None,
        REVOKED: token(owner, revoked_at=now),
        EXPIRED: token(owner, expires_at=now - timedelta(seconds=1)),
        READ_ONLY: token(owner, ApiToken.Scope.READ),
        OTHERS_TOKEN: token(people[OTHERS_TOKEN].uid),
        SUSPENDED: token(people[SUSPENDED].uid),
        DISABLED: token(people[DISABLED].uid),
        OWNER: token(owner),
    }


@pytest.mark.parametrize("name", sorted(API_MATRIX))
def test_each_token_gets_what_the_api_matrix_says(name, token_people) -> None:
    method, body, expected = API_MATRIX[name]
    tokens = _tokens(token_people)
    owner = User.objects.get(username=token_people[OWNER].uid)
    domain, _ = Domain.objects.get_or_create(name=settings.ALIAS_DOMAIN, defaults={"is_alias_domain": True})
    alias = Alias.objects.create(owner=owner, local_part=f"apimatrix{secrets.token_hex(3)}", domain=domain)
    pattern = dict(url_patterns())[name]
    kwargs = {"alias_id": alias.pk} if "alias_id" in pattern.pattern.converters else {}
    url = reverse(name, kwargs=kwargs) + (
        "?hostname=shop.example.com" if name.endswith(("suggestion", "options")) else ""
    )
    seen = {}
    for visitor in TOKEN_VISITORS:
        raw = tokens[visitor]
        headers = {}
        if raw is not None:
            headers = (
                {"HTTP_AUTHENTICATION": raw}
                if name.startswith("simplelogin:")
                else {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
            )
        data = json.dumps(body) if body is not None else None
        response = getattr(Client(), method.lower())(url, data=data, content_type="application/json", **headers)
        seen[visitor] = OK if response.status_code in (200, 201) else _outcome(response)
        if response.status_code >= 400:
            assert response["Content-Type"] == "application/json" and response.json(), (visitor, response.content)
    assert seen == {visitor: expected[visitor] for visitor in TOKEN_VISITORS}, url
    if name == "api:alias_update":  # the owner's call, the last one, and only theirs went through
        alias.refresh_from_db()
        assert alias.label == "changed"
