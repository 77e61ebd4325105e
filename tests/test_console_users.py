"""The staff user list: role, state, alias count and last sign-in per person, filters by role
and state, sorting, a total count, and pages, all from the directory as it is now."""

import re
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import ldap3
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import directory
from aliases.models import Alias, Domain
from localservices.slapd import Slapd
from outofoffice.models import VacationReply

pytestmark = pytest.mark.django_db

ROW = re.compile(r'<td data-label="User"><a href="/directory/users/([^/]+)/">')


def uids_shown(response: Any) -> list[str]:
    assert response.status_code == 200, response.status_code
    return ROW.findall(response.content.decode())


def row_of(response: Any, uid: str) -> str:
    html = response.content.decode()
    start = html.index(f'<a href="/directory/users/{uid}/">')
    return html[start : html.index("</tr>", start)]


@pytest.fixture
def tag() -> str:
    """A search term only this test's people match (the directory is shared by the run)."""
    return f"zq{secrets.token_hex(3)}"


@pytest.fixture
def people(make_directory_user: Callable[..., directory.DirectoryUser], tag: str) -> Callable[..., str]:
    def make(suffix: str, **kwargs: Any) -> str:
        return make_directory_user(uid=f"{tag}{suffix}", **kwargs).uid

    return make


def test_the_list_counts_every_match_and_pages_through_them_in_order(sign_in: Any, people: Any, tag: str) -> None:
    staff = sign_in("helpdesk")
    made = sorted(people(f"{n:02d}") for n in range(30))
    first = staff.get("/directory/", {"q": tag})
    assert uids_shown(first) == made[:25]
    assert "30 users match" in first.content.decode()
    assert "Page 1 of 2" in first.content.decode()
    second = staff.get("/directory/", {"q": tag, "page": 2})
    assert uids_shown(second) == made[25:]
    # Past the end (people were deleted meanwhile): the last page, not an empty one.
    assert uids_shown(staff.get("/directory/", {"q": tag, "page": 9})) == made[25:]


@pytest.mark.parametrize(
    ("sort", "key", "reverse"),
    [("uid", "uid", False), ("-uid", "uid", True), ("mail", "mail", False), ("-name", "cn", True)],
)
def test_the_list_sorts_the_whole_match_not_only_the_page(
    sign_in: Any, make_directory_user: Any, tag: str, sort: str, key: str, reverse: bool
) -> None:
    staff = sign_in("admin")
    made = []
    for n, mail_name in enumerate(["delta", "alpha", "echo", "charlie", "bravo"] * 6):
        made.append(make_directory_user(uid=f"{tag}{n:02d}", mail=f"{mail_name}{n:02d}.{tag}@example.org"))
    expected = [u.uid for u in sorted(made, key=lambda u: getattr(u, key).lower(), reverse=reverse)]
    assert uids_shown(staff.get("/directory/", {"q": tag, "sort": sort})) == expected[:25]
    assert uids_shown(staff.get("/directory/", {"q": tag, "sort": sort, "page": 2})) == expected[25:]


def test_the_list_filters_by_role_as_the_directory_groups_have_it(sign_in: Any, people: Any, tag: str) -> None:
    staff = sign_in("helpdesk")
    admin, helpdesk, user = people("a", role="admin"), people("h", role="helpdesk"), people("u")
    assert uids_shown(staff.get("/directory/", {"q": tag, "role": "admin"})) == [admin]
    assert uids_shown(staff.get("/directory/", {"q": tag, "role": "helpdesk"})) == [helpdesk]
    assert uids_shown(staff.get("/directory/", {"q": tag, "role": "end user"})) == [user]
    everyone = staff.get("/directory/", {"q": tag})
    assert ">admin</span>" in row_of(everyone, admin) and ">helpdesk</span>" in row_of(everyone, helpdesk)
    # A group change in the directory shows on the next page, nothing to refresh.
    directory.remove_from_group(admin, settings.LDAP_ADMIN_GROUP_DN)
    assert uids_shown(staff.get("/directory/", {"q": tag, "role": "admin"})) == []


def test_the_list_shows_and_filters_each_state(sign_in: Any, people: Any, tag: str) -> None:
    staff = sign_in("helpdesk")
    active, suspended, disabled = people("1active"), people("2suspended"), people("3disabled", password=None)
    away, soon = people("4away"), people("5soon")
    directory.set_sender_blocked(suspended, True)
    now = timezone.now()
    VacationReply.objects.create(uid=away, address=f"{away}@example.org", enabled=True, ends_at=now + timedelta(days=2))
    # Scheduled for next week: not away now.
    VacationReply.objects.create(
        uid=soon, address=f"{soon}@example.org", enabled=True, starts_at=now + timedelta(days=7)
    )
    expected = {"active": [active, soon], "suspended": [suspended], "disabled": [disabled], "away": [away]}
    for state, uids in expected.items():
        assert uids_shown(staff.get("/directory/", {"q": tag, "state": state})) == uids, state
    everyone = staff.get("/directory/", {"q": tag})
    for state, uids in expected.items():
        for uid in uids:
            assert f'">{state}</span>' in row_of(everyone, uid), (uid, state)


def test_the_list_shows_alias_counts_and_last_sign_in(sign_in: Any, people: Any, tag: str) -> None:
    staff = sign_in("admin")
    never, someone = people("never"), people("someone")
    owner = User.objects.create(username=someone, last_login=timezone.now() - timedelta(hours=3))
    domain, _ = Domain.objects.get_or_create(name="alias.example.org", defaults={"is_alias_domain": True})
    for n in range(3):
        Alias.objects.create(owner=owner, local_part=f"{tag}x{n}", domain=domain)
    page = staff.get("/directory/", {"q": tag})
    assert re.search(r'data-label="Aliases" class="numeric">3<', row_of(page, someone))
    assert "3\xa0hours ago" in row_of(page, someone)
    assert re.search(r'data-label="Aliases" class="numeric">0<', row_of(page, never))
    assert ">never</span>" in row_of(page, never)


def test_a_bad_filter_is_refused_plainly(sign_in: Any) -> None:
    staff = sign_in("helpdesk")
    for params in ({"role": "root"}, {"state": "*"}, {"sort": "userPassword"}, {"page": "0"}, {"q": "a\x00b"}):
        response = staff.get("/directory/", params)
        assert response.status_code == 200, params
        assert b"error" in response.content.lower()


def test_a_page_of_the_list_costs_one_connection_five_searches_and_pinned_queries(
    sign_in: Any, people: Any, tag: str, ldap_calls: list[str]
) -> None:
    staff: Client = sign_in("admin")
    for n in range(30):
        people(f"{n:02d}")
    staff.get("/directory/", {"q": tag})  # the session's directory check is done for a minute
    ldap_calls.clear()
    with CaptureQueriesContext(connection) as queries:
        response = staff.get("/directory/", {"q": tag, "sort": "-mail", "page": 2})
    assert len(uids_shown(response)) == 5
    # The change stamp on the kept connection; a new page: one connection for the change stamp,
    # the two staff groups, the sorted page with its count, who has no password.
    assert ldap_calls == ["search", "bind", "search", "search", "search", "search", "search"]
    pinned = len(queries)
    with CaptureQueriesContext(connection) as queries:
        staff.get("/directory/", {"q": tag, "state": "active"})
    assert len(queries) == pinned, [q["sql"] for q in queries.captured_queries]
    assert pinned <= 10, [q["sql"] for q in queries.captured_queries]


def test_the_same_page_again_costs_only_the_change_stamp_while_the_directory_is_unchanged(
    sign_in: Any, people: Any, tag: str, ldap_calls: list[str]
) -> None:
    staff: Client = sign_in("admin")
    made = sorted(people(f"{n:02d}") for n in range(3))
    first = staff.get("/directory/", {"q": tag, "state": "active"})
    ldap_calls.clear()
    again = staff.get("/directory/", {"q": tag, "state": "active"})
    assert uids_shown(again) == uids_shown(first) == made
    assert ldap_calls == ["search"]  # on the connection kept for it: no new connection


def _raw_modify(uid: str, changes: dict[str, Any]) -> None:
    """A change by another tool: straight to slapd, not through accounts.directory."""
    conn = ldap3.Connection(
        ldap3.Server(settings.LDAP_URI, get_info=ldap3.NONE),
        user=settings.LDAP_SERVICE_DN,
        password=settings.LDAP_SERVICE_PASSWORD,
        auto_bind=True,
    )
    try:
        assert conn.modify(directory.user_dn(uid), changes), conn.result
    finally:
        conn.unbind()


def test_a_change_made_elsewhere_shows_on_the_next_page_load(sign_in: Any, people: Any, tag: str) -> None:
    staff: Client = sign_in("helpdesk")
    one, two = people("1"), people("2")
    assert uids_shown(staff.get("/directory/", {"q": tag, "state": "active"})) == [one, two]
    _raw_modify(two, {settings.LDAP_SENDER_BLOCK_ATTR: [(ldap3.MODIFY_REPLACE, ["TRUE"])]})
    assert uids_shown(staff.get("/directory/", {"q": tag, "state": "active"})) == [one]
    _raw_modify(one, {"cn": [(ldap3.MODIFY_REPLACE, ["Renamed Person"])]})
    page = staff.get("/directory/", {"q": tag})
    assert "Renamed Person" in row_of(page, one) and '">suspended</span>' in row_of(page, two)


def test_without_a_change_stamp_every_page_is_read_afresh(
    sign_in: Any, people: Any, tag: str, ldap_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(directory, "_change_stamp", lambda conn: None)
    staff: Client = sign_in("helpdesk")
    people("1")
    staff.get("/directory/", {"q": tag})
    ldap_calls.clear()
    staff.get("/directory/", {"q": tag})
    assert ldap_calls == ["bind", "search", "search", "search", "search"]  # monkeypatched stamp: no search


def test_a_directory_that_cannot_sort_is_said_plainly(sign_in: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    staff = sign_in("helpdesk")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise directory.DirectoryCannotSort("the directory cannot sort: load slapd's sssvlv overlay")

    monkeypatch.setattr(directory, "_sorted_page", refuse)
    response = staff.get("/directory/")
    assert response.status_code == 503 and "sssvlv overlay" in response.content.decode()


def test_the_list_answers_again_as_soon_as_slapd_is_back(
    sign_in: Any, people: Any, tag: str, ldap_calls: list[str]
) -> None:
    staff: Client = sign_in("admin")
    made = [people("1")]
    assert uids_shown(staff.get("/directory/", {"q": tag})) == made
    slapd = Slapd()
    slapd.stop()
    slapd.start()  # the connection kept for the change stamp is gone with it
    ldap_calls.clear()
    assert uids_shown(staff.get("/directory/", {"q": tag})) == made
    assert ldap_calls == ["search", "bind", "search"]  # the broken one, then a new one; the page reused
    slapd.stop()
    try:
        assert staff.get("/directory/", {"q": tag}).status_code == 503
    finally:
        slapd.start()
    assert uids_shown(staff.get("/directory/", {"q": tag})) == made
