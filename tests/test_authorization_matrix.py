"""Who may do what, for every URL of the project.

Every URL pattern is found by walking the resolver; each must have an explicit entry in
MATRIX saying, for GET and POST, what each kind of visitor gets. A new view without a
decision here fails the suite (test_every_url_has_a_decision and its own parametrised case).

Visitors: anonymous; the OWNER of the objects in the URL (an end user); OTHER, an unrelated
end user; DELEGATE, the primary delegate named in the owner's handover note; TOPIC, a
delegate for one topic of that note; HELPDESK; ADMIN (both with a second factor, given);
PENDING, an admin who gave the right password but not yet the second factor.
"""

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
from aliases.models import Alias, Domain
from bulk.models import ImportJob
from handover.models import HandoverNote, TopicDelegate
from limits.models import SendingLimit
from mfa import services
from mfa.models import Passkey
from tests.conftest import DEMO_PASSWORD, give_second_factor, sign_in_client

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
    # CSV import and export: admins only; an import is its admin's (another admin gets 404,
    # tests/test_bulk_import.py). The actions are POST only, checked after the role.
    "bulk:index": {"GET": ADMINS, "POST": ADMINS},
    "bulk:job": {"GET": ADMINS, "POST": ADMINS},
    "bulk:apply": {"GET": each(LOGIN, DENIED, DENIED, DENIED, NOT_ALLOWED), "POST": ADMINS},
    "bulk:passwords": {"GET": each(LOGIN, DENIED, DENIED, DENIED, NOT_ALLOWED), "POST": ADMINS},
    "bulk:export": {"GET": each(LOGIN, DENIED, DENIED, DENIED, NOT_ALLOWED), "POST": ADMINS},
    # Outbound limits and the heaviest senders: admins only.
    "limits:list": {"GET": ADMINS, "POST": ADMINS},
    "limits:edit": {"GET": ADMINS, "POST": ADMINS},
    "limits:delete": {"GET": each(LOGIN, DENIED, DENIED, DENIED, NOT_ALLOWED), "POST": ADMINS},
    "limits:senders": {"GET": ADMINS, "POST": ADMINS},
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
    # The ADMIN visitor's import (test_second_factor.py passes people without one: the owner's).
    importer = people.get(ADMIN, people[OWNER]).uid
    job = ImportJob.objects.create(kind="users", created_by=User.objects.get(username=importer))
    return {"alias": alias, "domain": domain, "note": note, "uid": people[OWNER].uid, "import": job}


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
        elif parameter == "pk" and name.startswith("aliases:"):
            kwargs["pk"] = objects["alias"].pk
        elif parameter == "pk" and name.startswith("handover:"):
            kwargs["pk"] = objects["note"].pk
        elif parameter == "pk" and name.startswith("bulk:"):
            kwargs["pk"] = objects["import"].pk  # an import of the ADMIN visitor
        elif parameter == "pk" and name.startswith("limits:"):
            limit, _ = SendingLimit.objects.get_or_create(
                scope="person", name=objects["uid"], defaults={"recipients_per_hour": 9}
            )
            kwargs["pk"] = limit.pk
        elif parameter == "pk" and name == "mfa:passkey_remove":
            # Made only here: a passkey would make every other URL ask the owner for it.
            owner = User.objects.get(username=objects["uid"])
            kwargs["pk"] = Passkey.objects.create(
                user=owner, name=f"key {secrets.token_hex(3)}", credential_id=secrets.token_urlsafe(16), public_key=b"k"
            ).pk
        else:
            pytest.fail(f"{name}: say which object <{parameter}> points at in _arguments()")
    return kwargs


def _outcome(response) -> str:
    status = response.status_code
    if status in (301, 302, 303) and response["Location"].startswith(reverse("mfa:verify")):
        return SECOND_FACTOR
    if status in (301, 302, 303):
        return LOGIN if response["Location"].startswith(reverse("accounts:login")) else OK
    if status == 200:
        return OK
    if status in (403, 404, 405):
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
    alias.refresh_from_db()
    assert alias.enabled and alias.label == ""
