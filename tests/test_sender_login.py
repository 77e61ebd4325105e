"""The published sender_login table (smtpd_sender_login_maps): each person may send as their
mailbox and their live aliases, and nobody else's; a switched-off, expired or deleted alias is
in no table, so submission's reject_sender_login_mismatch refuses it. Looked up with
`postmap -q`, as Postfix reads it."""

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from accounts.directory import DirectoryUser
from aliases import services
from aliases.models import Domain
from aliases.postfix_feature import sender_logins
from postfix import config, publication
from tests.test_publication import lookup, make_alias, map_dir, person  # noqa: F401 (map_dir: a fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("map_dir")]


@pytest.fixture
def domain() -> Domain:
    return Domain.objects.create(name="alias.example.org", is_alias_domain=True)


@pytest.fixture
def owen(make_directory_user: Callable[..., DirectoryUser]) -> User:
    return person(make_directory_user, "owen")


@pytest.fixture
def tara(make_directory_user: Callable[..., DirectoryUser]) -> User:
    return person(make_directory_user, "tara")


def publish() -> None:
    assert publication.publish(coalesce=False).status in ("published", "unchanged")


def test_a_person_may_send_as_their_mailbox_and_live_aliases_and_nobody_elses(
    owen: User, tara: User, domain: Domain
) -> None:
    shop = make_alias(owen, "shopexamplecom", domain)
    taras = make_alias(tara, "news", domain)
    publication.request_publication("test")
    publish()

    assert lookup("sender_login", "owen@example.org") == "owen, owen@example.org"
    assert lookup("sender_login", shop.address) == "owen, owen@example.org"
    assert lookup("sender_login", taras.address) == "tara, tara@example.org"
    assert lookup("sender_login", "nobody@alias.example.org") is None
    assert lookup("sender_login", "@alias.example.org") is None  # never the whole domain


def test_a_switched_off_expired_or_deleted_alias_cannot_be_sent_from(owen: User, domain: Domain) -> None:
    off, gone, ending = (make_alias(owen, local, domain) for local in ("off", "gone", "ending"))
    publication.request_publication("test")
    publish()
    assert all(lookup("sender_login", a.address) == "owen, owen@example.org" for a in (off, gone, ending))

    # Through the services, each a keyed publication that changes the live table in place.
    services.set_alias_enabled(None, off, False)
    services.delete_aliases(None, [gone])  # type: ignore[arg-type]
    services.update_alias(None, ending, label="", expires_at=timezone.now(), vacation_replies=True)  # type: ignore[arg-type]
    publish()

    assert lookup("sender_login", off.address) is None
    assert lookup("sender_login", gone.address) is None
    assert lookup("sender_login", ending.address) is None
    assert lookup("recipient_access", off.address) == "550 5.1.1 This address is disabled"

    services.set_alias_enabled(None, off, True)
    publish()
    assert lookup("sender_login", off.address) == "owen, owen@example.org"


def test_a_uid_that_would_name_a_second_login_gives_the_mailbox_only() -> None:
    assert sender_logins("owen", "owen@example.org") == "owen, owen@example.org"
    assert sender_logins("odd, tara", "odd@example.org") == "odd@example.org"
    assert sender_logins("odd tara", "odd@example.org") == "odd@example.org"


def test_the_submission_service_checks_logins_against_ldap_and_the_published_table() -> None:
    ctx = config.context(services=frozenset({"submission"}))
    main_cf = config.main_cf(ctx)
    maps = next(line for line in main_cf if line.startswith("mailadmin_sender_login_maps = "))
    assert maps.endswith(f"ldap:{ctx.config_dir / 'sender_login_maps.cf'}, {ctx.table('sender_login')}")
    submission = main_cf[main_cf.index("mailadmin_submission_sender_restrictions =") :]
    assert "    reject_sender_login_mismatch," in submission
    assert "  -o smtpd_sender_login_maps=$mailadmin_sender_login_maps" in config.master_cf(ctx)
