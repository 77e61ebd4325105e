import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import directory
from audit.actions import NAMES
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def _event(action: str, actor: str = "", target: str = "", at: datetime | None = None, detail: str = "") -> AuditEvent:
    event = AuditEvent.objects.create(action=action, actor_name=actor, target=target, detail=detail)
    if at is not None:
        AuditEvent.objects.filter(pk=event.pk).update(created_at=at)
    return event


@pytest.fixture
def admin(sign_in):
    client = sign_in("admin")
    AuditEvent.objects.all().delete()  # the sign-in itself
    return client


def _rows(response) -> list[str]:
    return [event.detail for event in response.context["page"].object_list]


def test_audit_log_is_for_admins_only(sign_in, client) -> None:
    assert sign_in("end user").get("/audit/").status_code == 403
    assert sign_in("helpdesk").get("/audit/").status_code == 403
    assert client.get("/audit/").status_code == 302  # to the sign-in page
    assert sign_in("admin").get("/audit/").status_code == 200


def test_admin_sees_newest_events_first_with_who_did_what(admin) -> None:
    old = datetime(2026, 1, 1, tzinfo=UTC)
    _event("alias.disable", actor="alice", target="shop@alias.example.org", detail="older", at=old)
    _event("vacation.set", actor="hank", target="bob", detail="newer", at=datetime(2026, 2, 1, tzinfo=UTC))
    response = admin.get("/audit/")
    assert _rows(response)[:2] == ["newer", "older"]
    html = response.content.decode()
    assert "hank" in html and "vacation.set" in html and "shop@alias.example.org" in html


def test_filters_by_actor_target_and_action(admin) -> None:
    _event("alias.disable", actor="alice", target="shop@alias.example.org", detail="a1")
    _event("alias.create", actor="alice", target="news@alias.example.org", detail="a2")
    _event("vacation.set", actor="hank", target="alice", detail="h1")
    assert set(_rows(admin.get("/audit/", {"actor": "ALICE"}))) == {"a1", "a2"}
    assert set(_rows(admin.get("/audit/", {"target": "shop@"}))) == {"a1"}
    assert set(_rows(admin.get("/audit/", {"action": "vacation.set"}))) == {"h1"}
    assert set(_rows(admin.get("/audit/", {"actor": "alice", "action": "alias.create"}))) == {"a2"}


def test_date_range_covers_whole_days_in_the_viewers_time_zone(admin) -> None:
    # 23:30 UTC on 9 March is already 10 March in Berlin (UTC+1).
    _event("x", detail="late", at=datetime(2026, 3, 9, 23, 30, tzinfo=UTC))
    _event("x", detail="before", at=datetime(2026, 3, 8, 12, 0, tzinfo=UTC))
    _event("x", detail="after", at=datetime(2026, 3, 11, 12, 0, tzinfo=UTC))
    in_utc = admin.get("/audit/", {"since": "2026-03-09", "until": "2026-03-09"})
    assert _rows(in_utc) == ["late"]
    admin.cookies["tz"] = "Europe/Berlin"
    in_berlin = admin.get("/audit/", {"since": "2026-03-10", "until": "2026-03-10"})
    assert _rows(in_berlin) == ["late"]
    assert "Europe/Berlin" in in_berlin.content.decode()


@pytest.mark.parametrize(
    "params",
    [
        {"since": "2026-03-10", "until": "2026-03-01"},
        {"since": "not a date"},
        {"actor": "alice\nbob"},
        {"target": "a\x00b"},
        {"action": "no-such-action"},
        {"target": "x" * 300},
    ],
)
def test_a_bad_filter_shows_an_error_and_no_events(admin, params) -> None:
    _event("alias.create", actor="alice", detail="a1")
    response = admin.get("/audit/", params)
    assert response.status_code == 200
    assert response.context["form"].errors
    assert _rows(response) == []
    assert 'class="error"' in response.content.decode()


def test_ldap_filter_characters_are_plain_text_in_filters(admin) -> None:
    _event("x", target="weird*(name)", detail="w")
    _event("x", target="other", detail="o")
    assert _rows(admin.get("/audit/", {"target": "*(name)"})) == ["w"]


def test_pages_hold_fifty_events_and_keep_the_filters(admin) -> None:
    AuditEvent.objects.bulk_create(
        AuditEvent(action="alias.create", actor_name="alice", detail=f"e{i}") for i in range(120)
    )
    first = admin.get("/audit/", {"actor": "alice"})
    assert len(_rows(first)) == 50
    html = first.content.decode()
    assert "Page 1 of 3" in html
    assert 'href="?actor=alice&amp;page=2"' in html
    last = admin.get("/audit/", {"actor": "alice", "page": "3"})
    assert len(_rows(last)) == 20


def test_empty_log_and_empty_result_say_what_to_do(admin) -> None:
    assert "Nothing has been recorded yet" in admin.get("/audit/").content.decode()
    _event("x", actor="alice")
    assert "No events match these filters" in admin.get("/audit/", {"actor": "nobody"}).content.decode()


@pytest.fixture
def ldap_round_trips(monkeypatch):
    """LDAP connections opened by the code under test (the real directory still answers)."""
    opened = []
    real = directory.connection

    def counting():
        opened.append(1)
        return real()

    monkeypatch.setattr(directory, "connection", counting)
    return opened


def test_audit_log_queries_and_ldap_round_trips_do_not_grow_with_events(admin, ldap_round_trips) -> None:
    admin.get("/audit/")  # warm the session
    ldap_round_trips.clear()

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin.get("/audit/", {"actor": "alice"}).status_code == 200
        return len(captured)

    _event("alias.create", actor="alice")
    few = queries()
    AuditEvent.objects.bulk_create(
        AuditEvent(action=f"action.{i % 7}", actor_name="alice", target=f"t{i}") for i in range(300)
    )
    assert queries() == few
    assert ldap_round_trips == []
    # session, user (with its staff groups for the role and whether it is suspended, for the
    # banner), distinct actions, count, page
    assert few == 5


def test_every_action_the_code_records_has_a_name_in_words() -> None:
    root = Path(__file__).resolve().parent.parent
    recorded = set()
    for path in root.glob("*/**/*.py"):
        if any(part in (".venv", "var", "tests", "migrations") for part in path.parts):
            continue
        recorded.update(re.findall(r'record_event\(\s*"([a-z_.-]+)"', path.read_text()))
    assert recorded and recorded - set(NAMES) == set()
