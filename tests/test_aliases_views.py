from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import directory
from accounts.models import SenderSuspension
from aliases.models import Alias, AliasTombstone, Domain
from aliases.services import AliasRefused, create_alias
from audit.models import AuditEvent
from postfix import publication
from postfix.models import MapGeneration

pytestmark = pytest.mark.django_db


@pytest.fixture
def domains() -> tuple[Domain, Domain]:
    mailbox = Domain.objects.create(name=settings.MAIL_DOMAIN)
    alias = Domain.objects.create(name=settings.ALIAS_DOMAIN, is_alias_domain=True)
    return mailbox, alias


def _owner(client) -> User:
    return User.objects.get(username=client.directory_user.uid)


def _generation() -> int:
    row = MapGeneration.objects.filter(pk=1).first()
    return row.requested if row else 0


def _map_files(directory: Path | None = None) -> dict[str, bytes]:
    directory = directory or Path(settings.POSTFIX_MAP_DIR)
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*")) if p.is_file()} if directory.is_dir() else {}


def test_posting_a_site_url_alone_creates_the_proposed_address(sign_in, domains) -> None:
    client = sign_in()
    before = _generation()
    response = client.post("/aliases/new/site/", {"site": "https://www.twitter.com/signup"}, follow=True)
    alias = Alias.objects.get()
    assert alias.address == f"twittercom@{settings.ALIAS_DOMAIN}"
    assert (alias.site, alias.kind, alias.owner) == ("twitter.com", "site", _owner(client))
    assert not alias.vacation_replies
    page = response.content.decode()
    assert f"twittercom@{settings.ALIAS_DOMAIN}" in page
    assert 'data-copy="twittercom@' in page
    event = AuditEvent.objects.get(action="alias.create")
    assert (event.actor_name, event.target) == (client.directory_user.uid, alias.address)
    assert _generation() == before + 1


def test_a_second_alias_for_the_same_site_gets_a_numbered_name(sign_in, domains) -> None:
    client = sign_in()
    client.post("/aliases/new/site/", {"site": "twitter.com"})
    # The second one for the same site is offered the first, and made only when asked again.
    offered = client.post("/aliases/new/site/", {"site": "https://twitter.com/"}).content.decode()
    assert "You already have twittercom@alias.example.org for twitter.com" in offered
    assert 'data-copy="twittercom@alias.example.org"' in offered
    assert 'name="another" value="1"' in offered
    assert Alias.objects.count() == 1
    for not_asked in ("", "False", "0", "false"):
        client.post("/aliases/new/site/", {"site": "https://twitter.com/", "another": not_asked})
    assert Alias.objects.count() == 1
    client.post("/aliases/new/site/", {"site": "https://twitter.com/", "another": "1"})
    assert sorted(a.local_part for a in Alias.objects.all()) == ["twittercom", "twittercom2"]


def test_the_suggest_button_fills_in_the_name_without_creating_anything(sign_in, domains) -> None:
    client = sign_in()
    response = client.post("/aliases/new/site/", {"site": "https://www.twitter.com/signup", "suggest": "1"})
    assert 'value="twittercom"' in response.content.decode()
    assert not Alias.objects.exists()


def test_an_edited_local_part_and_label_are_used(sign_in, domains) -> None:
    client = sign_in()
    client.post("/aliases/new/site/", {"site": "twitter.com", "local_part": "Birds", "label": "social"})
    alias = Alias.objects.get()
    assert (alias.local_part, alias.label, alias.site) == ("birds", "social", "twitter.com")


@pytest.mark.parametrize(
    "local_part,message",
    [
        ("evil\nbcc", "spaces or line breaks"),
        ("two words", "spaces or line breaks"),
        ("hash#tag", "may not contain #"),
        ("a,b", "comma"),
        ("nul\x00byte", "Null characters"),
        ("x" * 300, "at most 64 characters"),
        ("postmaster", "reserved"),
        ("me@evil.example", "choose the domain separately"),
    ],
)
def test_hostile_local_parts_are_refused_and_change_nothing(sign_in, domains, local_part, message) -> None:
    client = sign_in()
    maps_before, generation_before = _map_files(), _generation()
    for kind in ("custom", "site"):
        response = client.post(f"/aliases/new/{kind}/", {"site": "twitter.com", "local_part": local_part})
        assert response.status_code == 200
        assert message in response.content.decode()
    assert not Alias.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="alias.").exists()
    assert _generation() == generation_before
    assert _map_files() == maps_before


HOSTILE = ["evil\nbcc", "two words", "hash#tag", "a,b", "nul\x00byte", "x" * 300, "postmaster", "tab\tx", "a:b"]


def test_hostile_local_parts_leave_the_published_maps_byte_for_byte_unchanged(sign_in, domains, tmp_path) -> None:
    client = sign_in()
    with override_settings(POSTFIX_MAP_DIR=tmp_path, POSTFIX_RELOAD_COMMAND="/bin/true"):
        client.post("/aliases/new/site/", {"site": "https://www.twitter.com/signup"})
        assert publication.publish(force=True, coalesce=False).status == "published"
        virtual = (tmp_path / "virtual").read_text()
        assert f"twittercom@{settings.ALIAS_DOMAIN} {client.directory_user.mail}\n" in virtual
        published = _map_files(tmp_path)
        for value in HOSTILE:
            for kind in ("custom", "site"):
                response = client.post(f"/aliases/new/{kind}/", {"site": "x.example", "local_part": value})
                assert response.status_code == 200 and 'class="error"' in response.content.decode()
        assert publication.publish(coalesce=False).status == "nothing to do"
        assert _map_files(tmp_path) == published
    assert Alias.objects.count() == 1


def test_an_admin_may_take_a_reserved_name(sign_in, domains) -> None:
    client = sign_in("admin")
    client.post("/aliases/new/custom/", {"local_part": "postmaster", "domain": domains[1].pk})
    assert Alias.objects.get().address == f"postmaster@{settings.ALIAS_DOMAIN}"


def test_an_address_that_is_a_mailbox_cannot_become_an_alias(sign_in, make_directory_user, domains) -> None:
    make_directory_user(mail=f"shop@{settings.ALIAS_DOMAIN}")
    client = sign_in()
    response = client.post("/aliases/new/custom/", {"local_part": "SHOP", "domain": domains[1].pk})
    assert "is not available" in response.content.decode()
    assert not Alias.objects.exists()


def test_a_colleagues_name_is_refused_on_a_shared_alias_domain(sign_in, make_directory_user, domains) -> None:
    # Alice's uid and the part before @ of Carol's mailbox: either would pass for theirs.
    make_directory_user(uid="alicecolleague")
    make_directory_user(mail=f"carol.colleague@{settings.MAIL_DOMAIN}")
    client = sign_in()
    for name in ("AliceColleague", "carol.colleague"):
        response = client.post("/aliases/new/custom/", {"local_part": name, "domain": domains[1].pk})
        assert "is the name of someone in the directory" in response.content.decode(), name
        response = client.post("/aliases/new/site/", {"site": "shop.example", "local_part": name})
        assert "is the name of someone in the directory" in response.content.decode(), name
    assert not Alias.objects.exists()
    # A name nobody has is fine; LDAP filter characters are escaped, not interpreted.
    assert directory.address_claims("*@alias.example.org") == directory.AddressClaims(False, frozenset())
    client.post("/aliases/new/custom/", {"local_part": "alicecolleagues", "domain": domains[1].pk})
    assert Alias.objects.get().local_part == "alicecolleagues"


def test_a_site_proposal_skips_a_colleagues_name(sign_in, make_directory_user, domains) -> None:
    make_directory_user(uid="twittercom")
    client = sign_in()
    client.post("/aliases/new/site/", {"site": "https://twitter.com/"})
    assert Alias.objects.get().local_part == "twittercom2"


def test_ones_own_name_and_an_admins_choice_are_allowed(sign_in, make_directory_user, domains) -> None:
    make_directory_user(uid="davecolleague")
    own = sign_in(uid="erincolleague")
    own.post("/aliases/new/custom/", {"local_part": "erincolleague", "domain": domains[1].pk})
    admin = sign_in("admin")
    admin.post("/aliases/new/custom/", {"local_part": "davecolleague", "domain": domains[1].pk})
    assert sorted(Alias.objects.values_list("local_part", flat=True)) == ["davecolleague", "erincolleague"]


def test_a_personal_catchall_domain_may_use_any_name(sign_in, make_directory_user, domains) -> None:
    make_directory_user(uid="frankcolleague")
    client = sign_in()
    own = Domain.objects.create(name="mine.example", catchall_owner=_owner(client))
    client.post("/aliases/new/custom/", {"local_part": "frankcolleague", "domain": own.pk})
    assert Alias.objects.get().address == "frankcolleague@mine.example"


def test_taken_addresses_compare_case_insensitively(sign_in, domains) -> None:
    first, second = sign_in(), sign_in()
    first.post("/aliases/new/custom/", {"local_part": "shop", "domain": domains[1].pk})
    response = second.post("/aliases/new/custom/", {"local_part": "ShOp", "domain": domains[1].pk})
    assert "is not available" in response.content.decode()
    assert Alias.objects.count() == 1


def test_a_catchall_destination_cannot_become_an_alias(sign_in, domains) -> None:
    Domain.objects.create(name="other.example", catchall_destinations=f"collect@{settings.ALIAS_DOMAIN}")
    client = sign_in()
    response = client.post("/aliases/new/custom/", {"local_part": "collect", "domain": domains[1].pk})
    assert "is not available" in response.content.decode()


def test_a_deleted_address_can_never_be_created_again_by_anyone(sign_in, domains) -> None:
    owner, other = sign_in(), sign_in()
    owner.post("/aliases/new/site/", {"site": "twitter.com"})
    alias = Alias.objects.get()
    confirm = owner.get(f"/aliases/{alias.pk}/delete/")
    assert "can ever" in confirm.content.decode() and Alias.objects.exists()
    owner.post(f"/aliases/{alias.pk}/delete/")
    assert not Alias.objects.exists()
    assert AliasTombstone.objects.get().address == f"twittercom@{settings.ALIAS_DOMAIN}"
    for client in (owner, other):
        response = client.post("/aliases/new/custom/", {"local_part": "TwitterCom", "domain": domains[1].pk})
        assert "is not available" in response.content.decode()
    # The site proposal moves on to a name that never existed.
    other.post("/aliases/new/site/", {"site": "twitter.com"})
    assert Alias.objects.get().local_part == "twittercom2"
    assert AuditEvent.objects.filter(action="alias.delete", target=alias.address).exists()


def test_disable_and_enable_switch_the_alias_and_request_publication(sign_in, domains) -> None:
    client = sign_in()
    client.post("/aliases/new/random/", {"domain": domains[1].pk})
    alias = Alias.objects.get()
    assert len(alias.local_part) == 12 and alias.kind == "random"
    generation = _generation()
    client.post(f"/aliases/{alias.pk}/disable/")
    alias.refresh_from_db()
    assert not alias.enabled and _generation() == generation + 1
    assert "switched off" in client.get(f"/aliases/{alias.pk}/").content.decode()
    client.post(f"/aliases/{alias.pk}/enable/", {"from": "list"})
    alias.refresh_from_db()
    assert alias.enabled and _generation() == generation + 2
    assert list(AuditEvent.objects.filter(target=alias.address).values_list("action", flat=True)) == [
        "alias.enable",
        "alias.disable",
        "alias.create",
    ]


def test_the_edit_page_sets_expiry_label_and_vacation_replies(sign_in, domains) -> None:
    client = sign_in()
    client.post("/aliases/new/custom/", {"local_part": "newsletters", "domain": domains[1].pk})
    alias = Alias.objects.get()
    day = timezone.localdate() + timedelta(days=10)
    form = {"label": "newsletter", "expires_on": day.isoformat(), "vacation_replies": "on"}
    client.post(f"/aliases/{alias.pk}/", form)
    alias.refresh_from_db()
    assert alias.label == "newsletter" and alias.vacation_replies
    assert timezone.localtime(alias.expires_at).date() == day
    assert not alias.is_expired()
    response = client.post(f"/aliases/{alias.pk}/", {"expires_on": (timezone.localdate()).isoformat()})
    assert "after today" in response.content.decode()


def test_an_expiry_in_the_past_is_refused_at_creation(sign_in, domains) -> None:
    client = sign_in()
    yesterday = timezone.localdate() - timedelta(days=1)
    response = client.post(
        "/aliases/new/custom/", {"local_part": "old", "domain": domains[1].pk, "expires_on": yesterday.isoformat()}
    )
    assert "after today" in response.content.decode()
    assert not Alias.objects.exists()


def test_another_users_alias_is_404_in_every_alias_view_and_action(sign_in, domains) -> None:
    owner, intruder = sign_in(), sign_in("admin")
    owner.post("/aliases/new/site/", {"site": "twitter.com"})
    alias = Alias.objects.get()
    for url in ("", "disable/", "enable/", "delete/"):
        assert intruder.get(f"/aliases/{alias.pk}/{url}").status_code == 404
        assert intruder.post(f"/aliases/{alias.pk}/{url}", {"label": "mine now"}).status_code == 404
    alias.refresh_from_db()
    assert alias.enabled and alias.label == ""
    assert alias.address not in intruder.get("/aliases/").content.decode()
    assert intruder.get("/aliases/999999/").status_code == 404
    assert owner.get(f"/aliases/{alias.pk}/disable/").status_code == 405


def test_signed_out_visitors_are_sent_to_sign_in(client, domains) -> None:
    assert client.get("/aliases/").status_code == 302
    assert client.post("/aliases/new/site/", {"site": "twitter.com"}).status_code == 302
    assert not Alias.objects.exists()


def test_only_the_users_own_catchall_domain_is_offered_besides_alias_domains(sign_in, domains) -> None:
    client, other = sign_in(), sign_in()
    personal = Domain.objects.create(name="me.example", catchall_owner=_owner(client))
    page = client.get("/aliases/new/custom/").content.decode()
    assert "me.example" in page and f">{settings.MAIL_DOMAIN}<" not in page
    client.post("/aliases/new/custom/", {"local_part": "shop", "domain": personal.pk})
    assert Alias.objects.get().address == "shop@me.example"
    response = other.post("/aliases/new/custom/", {"local_part": "other", "domain": personal.pk})
    assert "Select a valid choice" in response.content.decode()
    response = other.post("/aliases/new/custom/", {"local_part": "other", "domain": domains[0].pk})
    assert "Select a valid choice" in response.content.decode()
    assert Alias.objects.count() == 1


def test_the_alias_count_limit_is_explained(sign_in, domains, settings) -> None:
    settings.ALIAS_LIMIT_PER_USER = 2
    client = sign_in()
    for site in ("a.example", "b.example", "c.example"):
        response = client.post("/aliases/new/site/", {"site": site})
    assert "limit of 2 aliases" in response.content.decode()
    assert Alias.objects.count() == 2


def test_the_creation_rate_limit_counts_deleted_aliases_too(sign_in, domains, settings) -> None:
    settings.ALIAS_CREATION_RATE = 2
    client = sign_in()
    client.post("/aliases/new/random/", {"domain": domains[1].pk})
    client.post(f"/aliases/{Alias.objects.get().pk}/delete/")
    client.post("/aliases/new/random/", {"domain": domains[1].pk})
    response = client.post("/aliases/new/random/", {"domain": domains[1].pk})
    assert "the most allowed" in response.content.decode()
    assert Alias.objects.count() == 1


def test_create_alias_refuses_what_is_no_local_part_whoever_calls_it(domains) -> None:
    # The forms normalise the name; a caller without one (a command, a script) is refused all the same.
    owner = User.objects.create(username="direct", email="direct@example.org")
    generation = _generation()
    for bad in ("Shop", "a b", "a\nb@evil", "x" * 65, "", "a..b", "ümlaut"):
        with pytest.raises(AliasRefused):
            create_alias(None, owner, local_part=bad, domain=domains[1], kind="custom")
    assert not Alias.objects.exists() and not AuditEvent.objects.filter(action="alias.create").exists()
    assert _generation() == generation


def test_a_suspended_user_cannot_create_aliases(sign_in, domains) -> None:
    client = sign_in()
    # The row alone is what the rule reads; suspending through LDAP is the suspension feature's test.
    SenderSuspension.objects.create(uid=client.directory_user.uid, mail="x@example.org", reason="spam")
    response = client.post("/aliases/new/site/", {"site": "twitter.com"})
    assert "Your account is suspended" in response.content.decode()
    assert not Alias.objects.exists()


def test_search_sort_and_pages(sign_in, domains, settings) -> None:
    settings.ALIASES_PER_PAGE = 2
    client = sign_in()
    for site in ("zeta.example", "alpha.example", "mid.example"):
        client.post("/aliases/new/site/", {"site": site}, follow=True)
    page = client.get("/aliases/", {"q": "ALPHA"}).content.decode()
    assert "alphaexample@" in page and "zetaexample@" not in page
    first = client.get("/aliases/", {"sort": "address"}).content.decode()
    assert "alphaexample@" in first and "midexample@" in first and "zetaexample@" not in first
    assert "sort=address&amp;page=2" in first
    second = client.get("/aliases/", {"sort": "address", "page": 2}).content.decode()
    assert "zetaexample@" in second and "alphaexample@" not in second
    hostile = client.get("/aliases/", {"q": "x\x00y", "sort": "'; drop", "page": "nope"})
    assert hostile.status_code == 200


def _list_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/aliases/", {"sort": "address", "page": 2})
    assert response.status_code == 200
    return len(queries)


def test_the_alias_list_query_count_does_not_grow_with_the_number_of_aliases(sign_in, domains) -> None:
    client = sign_in()
    owner = _owner(client)
    Alias.objects.bulk_create(Alias(owner=owner, local_part=f"a{n:04}", domain=domains[1]) for n in range(60))
    small = _list_queries(client)
    Alias.objects.bulk_create(Alias(owner=owner, local_part=f"b{n:04}", domain=domains[1]) for n in range(1000))
    large = _list_queries(client)
    # session, user (with its staff groups and whether it is suspended), state counts (the total
    # too), page
    assert small == large == 4
