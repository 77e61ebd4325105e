from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from aliases.management.commands.seed_demo import Command
from aliases.models import Alias, Domain
from audit.models import AuditEvent
from postfix.models import MapGeneration

pytestmark = pytest.mark.django_db


def _generation() -> int:
    row = MapGeneration.objects.filter(pk=1).first()
    return row.requested if row else 0


def _form(**values: str) -> dict[str, str]:
    return {"name": "", "kind": "mailbox", "catchall_destinations": "", "catchall_owner_uid": "", **values}


def test_an_admin_adds_an_alias_domain(sign_in) -> None:
    admin = sign_in("admin")
    response = admin.post("/aliases/domains/new/", _form(name="Disposable.Example.", kind="alias"))
    assert response.status_code == 302
    domain = Domain.objects.get()
    assert (domain.name, domain.is_alias_domain) == ("disposable.example", True)
    assert "disposable.example" in admin.get("/aliases/domains/").content.decode()
    event = AuditEvent.objects.get(action="domain.create")
    assert (event.actor_name, event.target) == (admin.directory_user.uid, "disposable.example")
    assert _generation() == 1


@pytest.mark.parametrize("role", ["end user", "helpdesk"])
def test_only_admins_may_see_or_change_domains(sign_in, role) -> None:
    client = sign_in(role)
    assert client.get("/aliases/domains/").status_code == 403
    assert client.post("/aliases/domains/new/", _form(name="sneaky.example")).status_code == 403
    assert not Domain.objects.exists()


@pytest.mark.parametrize(
    "name,message",
    [
        ("bad domain.example", "spaces or line breaks"),
        ("evil.example\nrelay", "spaces or line breaks"),
        ("hash#.example", "may not contain #"),
        ("nodot", "is not a domain name"),
        ("a" * 300 + ".example", "at most 253"),
    ],
)
def test_malformed_domain_names_change_nothing(sign_in, name, message) -> None:
    admin = sign_in("admin")
    response = admin.post("/aliases/domains/new/", _form(name=name))
    assert message in response.content.decode()
    assert not Domain.objects.exists() and _generation() == 0


def test_a_domain_cannot_be_added_twice(sign_in) -> None:
    Domain.objects.create(name="twice.example")
    response = sign_in("admin").post("/aliases/domains/new/", _form(name="TWICE.example"))
    assert "already a domain here" in response.content.decode()


def test_catchall_destinations_must_be_mailboxes_on_our_domains(sign_in, make_directory_user) -> None:
    mailbox = Domain.objects.create(name=settings.MAIL_DOMAIN)
    person = make_directory_user()
    admin = sign_in("admin")
    domain = Domain.objects.create(name="shop.example")
    url = f"/aliases/domains/{domain.pk}/"
    response = admin.post(url, _form(catchall_destinations=f"ghost@{mailbox.name}"))
    assert "is no mailbox or alias" in response.content.decode()
    response = admin.post(url, _form(catchall_destinations="a@outside.example,\nbad address@x.example"))
    assert "spaces or line breaks" in response.content.decode()
    domain.refresh_from_db()
    assert domain.catchall_destinations == ""
    response = admin.post(url, _form(catchall_destinations=f"{person.mail.upper()}\nfriend@Outside.example"))
    assert response.status_code == 302
    domain.refresh_from_db()
    assert domain.catchall_addresses == [person.mail, "friend@outside.example"]
    assert AuditEvent.objects.get(action="domain.update").target == "shop.example"


def test_a_personal_catchall_owner_is_chosen_by_uid_before_they_ever_signed_in(sign_in, make_directory_user) -> None:
    admin = sign_in("admin")
    person = make_directory_user()
    domain = Domain.objects.create(name="me.example")
    response = admin.post(f"/aliases/domains/{domain.pk}/", _form(catchall_owner_uid="nobody-here"))
    assert "There is no user nobody-here" in response.content.decode()
    response = admin.post(f"/aliases/domains/{domain.pk}/", _form(catchall_owner_uid="x)(uid=*"))
    assert "not a user name" in response.content.decode()
    admin.post(f"/aliases/domains/{domain.pk}/", _form(catchall_owner_uid=person.uid))
    domain.refresh_from_db()
    assert domain.catchall_owner is not None and domain.catchall_owner.username == person.uid
    # The maps route the catch-all to the owner's mailbox, known before their first sign-in.
    assert domain.catchall_owner.email == person.mail
    both = _form(catchall_owner_uid=person.uid, catchall_destinations="a@outside.example")
    assert "not both" in admin.post(f"/aliases/domains/{domain.pk}/", both).content.decode()


def test_a_domain_cannot_be_renamed(sign_in) -> None:
    domain = Domain.objects.create(name="keep.example", is_alias_domain=True)
    sign_in("admin").post(f"/aliases/domains/{domain.pk}/", _form(name="other.example", kind="alias"))
    domain.refresh_from_db()
    assert domain.name == "keep.example"


def test_seed_demo_creates_the_demo_domains_once(db) -> None:
    # Only the domain step: the demo users would stay in this run's directory.
    for _ in range(2):
        Command(stdout=StringIO())._seed_domains()
    names = dict(Domain.objects.values_list("name", "is_alias_domain"))
    assert names == {settings.MAIL_DOMAIN: False, settings.ALIAS_DOMAIN: True}
    assert AuditEvent.objects.filter(action="domain.create").count() == 2


def test_an_alias_domain_in_use_stays_an_alias_domain(sign_in) -> None:
    admin = sign_in("admin")
    domain = Domain.objects.create(name="used.example", is_alias_domain=True)
    Alias.objects.create(owner=User.objects.get(username=admin.directory_user.uid), local_part="x", domain=domain)
    response = admin.post(f"/aliases/domains/{domain.pk}/", _form())
    assert "1 aliases use this domain" in response.content.decode()
    domain.refresh_from_db()
    assert domain.is_alias_domain


@pytest.mark.parametrize("which", ["routing", "handoff"])
def test_the_vacation_routing_domain_and_its_hand_off_subdomain_are_no_mail_domains(sign_in, which) -> None:
    routing = settings.VACATION_ROUTING_DOMAIN
    name = routing if which == "routing" else f"handoff.{routing}"
    before = _generation()
    response = sign_in("admin").post("/aliases/domains/new/", _form(name=name))
    assert response.status_code == 200
    assert "vacation routing domain" in response.content.decode()
    assert not Domain.objects.filter(name=name).exists()
    assert _generation() == before


def test_an_admin_deletes_a_domain_nothing_uses(sign_in) -> None:
    domain = Domain.objects.create(name="unused.example", is_alias_domain=True)
    admin = sign_in("admin")
    assert "Delete the domain" in admin.get(f"/aliases/domains/{domain.pk}/delete/").content.decode()
    before = _generation()
    response = admin.post(f"/aliases/domains/{domain.pk}/delete/")
    assert response.status_code == 302
    assert not Domain.objects.filter(name="unused.example").exists()
    assert AuditEvent.objects.get(action="domain.delete").target == "unused.example"
    assert _generation() == before + 1


@pytest.mark.parametrize("use", ["alias", "catch-all", "mailbox", "mail domain"])
def test_a_domain_in_use_is_not_deleted_and_the_page_says_why(sign_in, make_directory_user, use) -> None:
    name = {"mailbox": "people.example", "mail domain": settings.MAIL_DOMAIN}.get(use, "used.example")
    domain = Domain.objects.create(name=name, is_alias_domain=use != "mailbox")
    if use == "alias":
        owner = User.objects.create(username="owner", email="owner@example.org")
        Alias.objects.create(owner=owner, local_part="shop", domain=domain, enabled=False)
    elif use == "catch-all":
        domain.catchall_destinations = "owner@example.org"
        domain.save()
    elif use == "mailbox":
        make_directory_user(mail="someone@people.example")
    admin = sign_in("admin")
    before = _generation()
    response = admin.post(f"/aliases/domains/{domain.pk}/delete/")
    assert response.status_code == 200
    reason = {
        "alias": "1 alias use it",
        "catch-all": "it has a catch-all",
        "mailbox": "the directory has mailboxes in it (someone@people.example",
        "mail domain": "mail domain",
    }[use]
    assert reason in response.content.decode()
    assert Domain.objects.filter(pk=domain.pk).exists() and _generation() == before
    assert not AuditEvent.objects.filter(action="domain.delete").exists()


@pytest.mark.parametrize("role", ["end user", "helpdesk"])
def test_only_admins_may_delete_a_domain(sign_in, role) -> None:
    domain = Domain.objects.create(name="unused.example", is_alias_domain=True)
    assert sign_in(role).post(f"/aliases/domains/{domain.pk}/delete/").status_code == 403
    assert Domain.objects.filter(pk=domain.pk).exists()
