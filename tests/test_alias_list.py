"""The alias list that finds the leak: search by the pasted address, filters, sorting, the
switch in the row that keeps the list as it was, and several aliases at once."""

import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import directory
from activity.models import AliasDailyCount, LeakFlag
from aliases import listing
from aliases.forms import AliasSearchForm, AliasSort, AliasState
from aliases.models import Alias, AliasTombstone, Domain
from audit.models import AuditEvent
from postfix.models import MapGeneration

pytestmark = pytest.mark.django_db


@pytest.fixture
def alias_domain() -> Domain:
    Domain.objects.create(name=settings.MAIL_DOMAIN)
    return Domain.objects.create(name=settings.ALIAS_DOMAIN, is_alias_domain=True)


@pytest.fixture
def owner(sign_in, alias_domain):
    client = sign_in()
    client.user = User.objects.get(username=client.directory_user.uid)
    return client


def _make(client, local_part: str, domain: Domain, **fields) -> Alias:
    return Alias.objects.create(owner=client.user, local_part=local_part, domain=domain, **fields)


def _shown(response) -> list[str]:
    return re.findall(r'class="mono">([^<]+@[^<]+)</a>', response.content.decode())


def _generation() -> int:
    row = MapGeneration.objects.filter(pk=1).first()
    return row.requested if row else 0


@pytest.mark.parametrize(
    "pasted",
    [
        "shopexamplecom@alias.example.org",
        "ShopExampleCom@Alias.Example.ORG",
        "  <shopexamplecom@alias.example.org> ",
        '"Shop newsletter" <shopexamplecom@alias.example.org>',
        "mailto:shopexamplecom@alias.example.org",
    ],
)
def test_the_whole_address_as_pasted_from_a_mail_finds_exactly_that_alias(owner, alias_domain, pasted) -> None:
    _make(owner, "shopexamplecom", alias_domain, site="shop.example.com")
    _make(owner, "shopexamplecom2", alias_domain, site="shop.example.com")
    _make(owner, "other", alias_domain, label="shopexamplecom fan club")
    assert _shown(owner.get("/aliases/", {"q": pasted})) == ["shopexamplecom@alias.example.org"]


def test_part_of_a_name_site_or_note_still_finds_every_match(owner, alias_domain) -> None:
    _make(owner, "birds", alias_domain, site="twitter.com")
    _make(owner, "news", alias_domain, label="from Twitter")
    _make(owner, "shop", alias_domain, site="shop.example")
    assert sorted(_shown(owner.get("/aliases/", {"q": "twitter"}))) == [
        "birds@alias.example.org",
        "news@alias.example.org",
    ]


def test_search_never_shows_someone_elses_alias(owner, alias_domain, sign_in) -> None:
    other = sign_in()
    Alias.objects.create(
        owner=User.objects.get(username=other.directory_user.uid), local_part="theirs", domain=alias_domain
    )
    assert _shown(owner.get("/aliases/", {"q": "theirs@alias.example.org"})) == []


def test_filters_show_on_off_and_expired_aliases_with_their_counts(owner, alias_domain) -> None:
    _make(owner, "live", alias_domain)
    _make(owner, "off", alias_domain, enabled=False)
    _make(owner, "old", alias_domain, expires_at=timezone.now() - timedelta(days=1))
    _make(owner, "later", alias_domain, expires_at=timezone.now() + timedelta(days=1))
    assert sorted(_shown(owner.get("/aliases/", {"state": "on"}))) == [
        "later@alias.example.org",
        "live@alias.example.org",
    ]
    assert _shown(owner.get("/aliases/", {"state": "off"})) == ["off@alias.example.org"]
    page = owner.get("/aliases/", {"state": "expired"})
    assert _shown(page) == ["old@alias.example.org"]
    counts = re.findall(r'>(All|On|Off|Expired) <span class="count">(\d+)</span>', page.content.decode())
    assert counts == [("All", "4"), ("On", "2"), ("Off", "1"), ("Expired", "1")]
    assert 'badge-danger">expired' in page.content.decode()


def test_column_headings_sort_both_ways_and_say_so(owner, alias_domain) -> None:
    for name, site in (("b", "zeta.example"), ("a", "mid.example"), ("c", "alpha.example")):
        _make(owner, name, alias_domain, site=site)
    by_site = owner.get("/aliases/", {"sort": "site"})
    assert _shown(by_site) == ["c@alias.example.org", "a@alias.example.org", "b@alias.example.org"]
    html = by_site.content.decode()
    assert 'aria-sort="ascending"><a href="?sort=-site">Site</a>' in html
    assert _shown(owner.get("/aliases/", {"sort": "-site"})) == [
        "b@alias.example.org",
        "a@alias.example.org",
        "c@alias.example.org",
    ]
    assert _shown(owner.get("/aliases/", {"sort": "address"}))[0] == "a@alias.example.org"
    # Old bookmarks keep working; a made-up order falls back to the newest first.
    assert owner.get("/aliases/", {"sort": "old"}).status_code == 200
    assert _shown(owner.get("/aliases/", {"sort": "password"}))[0] == "c@alias.example.org"


def test_every_row_has_a_copy_button_and_a_tick_box(owner, alias_domain) -> None:
    alias = _make(owner, "copyme", alias_domain)
    html = owner.get("/aliases/").content.decode()
    assert 'data-copy="copyme@alias.example.org"' in html
    assert f'name="ids" value="{alias.pk}" form="alias-bulk"' in html


def test_the_switch_without_scripts_comes_back_to_the_same_search_sort_and_page(owner, alias_domain) -> None:
    alias = _make(owner, "leaky", alias_domain)
    here = "/aliases/?q=leak&state=on&sort=-site&page=1"
    response = owner.post(f"/aliases/{alias.pk}/disable/", {"next": here})
    assert response.status_code == 302 and response["Location"] == here
    alias.refresh_from_db()
    assert not alias.enabled
    assert AuditEvent.objects.filter(action="alias.disable", target=alias.address).count() == 1


@pytest.mark.parametrize(
    "next_url", ["https://evil.example/aliases/", "//evil.example/aliases/", "/accounts/password/", "/aliases\\x"]
)
def test_the_way_back_never_leaves_the_alias_list(owner, alias_domain, next_url) -> None:
    alias = _make(owner, "leaky", alias_domain)
    response = owner.post(f"/aliases/{alias.pk}/disable/", {"next": next_url})
    assert response["Location"] == f"/aliases/{alias.pk}/"


def test_the_switch_with_scripts_answers_with_the_new_row_only(owner, alias_domain) -> None:
    alias = _make(owner, "leaky", alias_domain)
    response = owner.post(f"/aliases/{alias.pk}/disable/", {"next": "/aliases/"}, HTTP_X_REQUESTED_WITH="fetch")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith(f'<tr id="alias-{alias.pk}" data-message="leaky@alias.example.org is switched off')
    assert "<html" not in html and 'badge-off">off' in html and ">Switch on</button>" in html
    again = owner.post(f"/aliases/{alias.pk}/enable/", {}, HTTP_X_REQUESTED_WITH="fetch").content.decode()
    assert 'badge-ok">on' in again
    # No message waits for the next full page: it was announced in the row.
    assert "switched" not in owner.get("/aliases/").content.decode().split("<main")[1].split("<table")[0]


def test_selected_aliases_are_switched_off_after_one_confirmation(owner, alias_domain) -> None:
    picked = [_make(owner, f"leak{n}", alias_domain) for n in range(3)]
    kept = _make(owner, "kept", alias_domain)
    ids = [str(a.pk) for a in picked]
    here = "/aliases/?q=leak&sort=address"
    question = owner.post("/aliases/selected/", {"action": "off", "ids": ids, "next": here})
    html = question.content.decode()
    assert question.status_code == 200 and "Switch off 3 addresses?" in html
    assert all(a.address in html for a in picked) and kept.address not in html
    assert Alias.objects.filter(enabled=False).count() == 0
    before = _generation()
    done = owner.post("/aliases/selected/", {"action": "off", "ids": ids, "next": here, "confirmed": "yes"})
    assert done.status_code == 302 and done["Location"] == here
    assert sorted(Alias.objects.filter(enabled=False).values_list("local_part", flat=True)) == [
        "leak0",
        "leak1",
        "leak2",
    ]
    assert AuditEvent.objects.filter(action="alias.disable").count() == 3
    assert _generation() == before + 1  # one publication for the lot
    owner.post("/aliases/selected/", {"action": "on", "ids": ids[:1], "confirmed": "yes"})
    assert Alias.objects.get(pk=picked[0].pk).enabled


def test_selected_aliases_are_deleted_for_good(owner, alias_domain) -> None:
    picked = [_make(owner, f"gone{n}", alias_domain) for n in range(2)]
    owner.post("/aliases/selected/", {"action": "delete", "ids": [a.pk for a in picked], "confirmed": "yes"})
    assert not Alias.objects.filter(local_part__startswith="gone").exists()
    assert set(AliasTombstone.objects.values_list("address", flat=True)) == {a.address for a in picked}


def test_a_selection_holding_someone_elses_alias_is_not_found_and_changes_nothing(owner, alias_domain, sign_in) -> None:
    mine = _make(owner, "mine", alias_domain)
    other = sign_in()
    theirs = Alias.objects.create(
        owner=User.objects.get(username=other.directory_user.uid), local_part="theirs", domain=alias_domain
    )
    response = owner.post("/aliases/selected/", {"action": "delete", "ids": [mine.pk, theirs.pk], "confirmed": "yes"})
    assert response.status_code == 404
    assert Alias.objects.count() == 2 and not AliasTombstone.objects.exists()


@pytest.mark.parametrize(
    "data",
    [
        {"action": "off"},
        {"action": "off", "ids": ["1; DROP TABLE x"]},
        {"action": "off", "ids": ["-1"]},
        {"action": "explode", "ids": ["1"]},
        {"action": "off", "ids": [str(n) for n in range(501)]},
    ],
)
def test_a_bad_selection_gets_a_clear_error_and_changes_nothing(owner, alias_domain, data) -> None:
    _make(owner, "mine", alias_domain)
    response = owner.post("/aliases/selected/", {**data, "confirmed": "yes"})
    assert response.status_code == 200
    assert "Nothing was changed" in response.content.decode()
    assert Alias.objects.get().enabled


def test_the_selection_page_is_post_only(owner) -> None:
    assert owner.get("/aliases/selected/").status_code == 405


@pytest.mark.parametrize(
    "site", ["<b>bold</b>", "javascript:alert(1)", "ftp://", "ftp://files.example.com", "\U0001f600\U0001f4a9"]
)
def test_the_site_field_refuses_what_is_not_a_host_name_or_web_address(owner, site) -> None:
    response = owner.post("/aliases/new/site/", {"site": site})
    assert response.status_code == 200
    assert "Enter the site&#x27;s web address" in response.content.decode()
    assert not Alias.objects.exists()


def test_the_list_costs_the_same_queries_for_a_search_a_filter_and_a_sort(owner, alias_domain, monkeypatch) -> None:
    Alias.objects.bulk_create(Alias(owner=owner.user, local_part=f"a{n:04}", domain=alias_domain) for n in range(120))
    owner.get("/aliases/")
    opened = []
    real = directory.connection
    monkeypatch.setattr(directory, "connection", lambda: opened.append(1) or real())
    for params in ({}, {"q": "a00"}, {"q": "a0001@alias.example.org"}, {"state": "on"}, {"sort": "-site", "page": 2}):
        with CaptureQueriesContext(connection) as queries:
            assert owner.get("/aliases/", params).status_code == 200
        # session, the user (with their staff groups and whether they are suspended), state
        # counts, page; a text search also counts its matches (otherwise the state counts hold the total)
        expected = 5 if "q" in params else 4
        assert len(queries) == expected, (params, [q["sql"] for q in queries])
    assert opened == []  # no LDAP round trip (the session's directory check is not due)


def test_rows_escape_whatever_a_note_or_site_holds(owner, alias_domain) -> None:
    hostile = "<img src=x onerror=alert(1)>\"'&"
    alias = _make(owner, "plain", alias_domain, label=hostile, site=hostile)
    pages = [
        owner.get("/aliases/").content.decode(),
        owner.post(f"/aliases/{alias.pk}/disable/", {}, HTTP_X_REQUESTED_WITH="fetch").content.decode(),
    ]
    for html in pages:
        assert "<img" not in html
        assert "&lt;img src=x onerror=alert(1)&gt;&quot;&#x27;&amp;" in html


def test_another_app_adds_a_column_a_sort_and_a_state_with_one_entry_each(owner, alias_domain, monkeypatch) -> None:
    # What the activity app does with its reverse relation; here through the owner relation.
    monkeypatch.setattr(
        listing,
        "COLUMNS",
        [
            *listing.COLUMNS,
            listing.Column("who", "Owner", lambda a, row: a["owner__username"], "who", ("owner__username",)),
        ],
    )
    monkeypatch.setitem(AliasSearchForm.SORTS, "who", AliasSort("owner", ("owner__username", "id")))
    monkeypatch.setitem(AliasSearchForm.STATES, "noted", AliasState("noted", lambda now: ~Q(label="")))
    _make(owner, "plain", alias_domain)
    _make(owner, "withnote", alias_domain, label="hello")
    with CaptureQueriesContext(connection) as queries:
        page = owner.get("/aliases/", {"state": "noted", "sort": "who"})
    html = page.content.decode()
    assert _shown(page) == ["withnote@alias.example.org"]
    assert f"<td>{owner.user.username}</td>" in html
    assert 'aria-sort="ascending"><a href="?state=noted&amp;sort=-who">Owner</a>' in html
    assert re.search(r'>Noted <span class="count">1</span>', html)
    assert len(queries) == 4  # the column's value comes with the page's one query


def test_state_counts_follow_the_moment_each_request_gives(owner, alias_domain) -> None:
    # The counting query is built once and reused: the moment must still be each call's own.
    expiry = timezone.now().replace(microsecond=0) + timedelta(days=2)
    _make(owner, "soon", alias_domain, expires_at=expiry)
    _make(owner, "never", alias_domain)
    _make(owner, "off", alias_domain, enabled=False)
    search = AliasSearchForm({})
    assert search.is_valid()
    pk = owner.user.pk
    before = listing.state_counts(pk, search, expiry - timedelta(microseconds=1))
    at = listing.state_counts(pk, search, expiry)
    after = listing.state_counts(pk, search, expiry + timedelta(seconds=1))
    assert before == {"all": 3, "on": 2, "off": 1, "expired": 0, "leaked": 0}
    assert at == after == {"all": 3, "on": 1, "off": 1, "expired": 1, "leaked": 0}
    nobody = User.objects.create(username="noaliases")
    assert listing.state_counts(nobody.pk, search, expiry) == {"all": 0, "on": 0, "off": 0, "expired": 0, "leaked": 0}


def test_the_rows_compiled_once_are_the_orms_rows_for_every_state_sort_and_page(owner, alias_domain) -> None:
    # Without a text search the page's rows come from SQL compiled once per state, sort and slice
    # (listing.OwnRows); they must be what QuerySet.values() gives, value for value, at the moment given.
    now = timezone.now()
    for n in range(12):
        alias = _make(
            owner,
            f"a{n:02}",
            alias_domain,
            site=f"shop{n % 4}.example",
            label=f"note {n % 3}",
            enabled=n % 5 != 0,
            expires_at=now + timedelta(days=n - 6) if n % 2 else None,
        )
        if n % 3 == 0:
            AliasDailyCount.objects.create(alias=alias, day=now.date(), accepted=n, refused=n % 2, last_at=now)
        if n % 4 == 1:
            LeakFlag.objects.create(
                alias=alias, registrable_domain="x.example", sender_domain="m.x.example", flagged_at=now
            )
    sorts = [key for entry in AliasSearchForm.SORTS for key in (entry, f"-{entry}")]
    for state in ["", *AliasSearchForm.STATES]:
        for sort in sorts:
            search = AliasSearchForm({"state": state, "sort": sort})
            assert search.is_valid()
            orm = list(search.filter(listing.values(owner_id=owner.user.pk), now))
            rows = listing.OwnRows(owner.user.pk, search, now, len(orm))
            assert rows[0:5] + rows[5:12] == orm[:12], (state, sort)
            assert rows[0:0] == []
    everything = list(listing.values(owner_id=owner.user.pk))  # the rows compared hold each kind of value
    assert {row["leak_domain"] for row in everything} == {None, "m.x.example"}
    assert {row["mails_30d"] for row in everything} == {0, 3, 6, 9}
    assert {row["enabled"] for row in everything} == {True, False}
