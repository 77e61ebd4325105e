"""The audit log for people: actions in words, sign-ins left out unless asked for, and the
filtered view as CSV, streamed whatever its size."""

import csv
import io
import tracemalloc
from datetime import UTC, datetime
from typing import Any

import pytest
from django.http import StreamingHttpResponse
from django.test import Client

from audit.models import AuditEvent
from tests.test_hostile_input_forms import NASTY

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(sign_in: Any) -> Client:
    client = sign_in("admin")
    AuditEvent.objects.all().delete()  # the sign-in itself
    return client


def _event(action: str, actor: str = "", target: str = "", detail: str = "") -> AuditEvent:
    return AuditEvent.objects.create(action=action, actor_name=actor, target=target, detail=detail)


def _csv(response: Any) -> list[list[str]]:
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-log-')
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_actions_are_named_in_words(admin: Client) -> None:
    _event("vacation.set", actor="hank", target="bob")
    _event("api-token.create", actor="hank")  # a code this release has no name for
    html = admin.get("/audit/").content.decode()
    assert "Set a vacation reply" in html and ">vacation.set<" not in html
    assert "Api token create" in html
    assert '<option value="vacation.set">Set a vacation reply</option>' in html


def test_sign_ins_are_left_out_unless_asked_for(admin: Client) -> None:
    _event("sign-in", actor="alice", detail="signed in")
    _event("sign-in.second-factor", actor="alice", detail="second factor")
    _event("alias.create", actor="alice", detail="made an alias")
    plain = admin.get("/audit/")
    assert [e.detail for e in plain.context["page"].object_list] == ["made an alias"]
    assert "(sign-ins not shown)" in plain.content.decode()
    shown = admin.get("/audit/", {"sign_ins": "on"})
    assert len(shown.context["page"].object_list) == 3
    # Asking for the sign-in action shows them too.
    asked = admin.get("/audit/", {"action": "sign-in"})
    assert [e.detail for e in asked.context["page"].object_list] == ["signed in"]


def test_the_export_holds_exactly_the_filtered_view_in_the_viewers_time_zone(admin: Client) -> None:
    event = _event("alias.disable", actor="alice", target="shop@alias.example.org", detail="leaked, line one\nline 2")
    AuditEvent.objects.filter(pk=event.pk).update(created_at=datetime(2026, 3, 9, 23, 30, tzinfo=UTC))
    _event("vacation.set", actor="hank", target="bob")
    _event("sign-in", actor="alice")
    admin.cookies["tz"] = "Europe/Berlin"
    page = admin.get("/audit/", {"actor": "alice"}).content.decode()
    assert 'href="/audit/export.csv?actor=alice"' in page
    rows = _csv(admin.get("/audit/export.csv", {"actor": "alice"}))
    assert rows == [
        ["time", "actor", "action", "action code", "target", "detail", "client address"],
        [
            "2026-03-10T00:30:00+01:00",
            "alice",
            "Switched an alias off",
            "alias.disable",
            "shop@alias.example.org",
            "leaked, line one\nline 2",
            "",
        ],
    ]
    with_sign_ins = _csv(admin.get("/audit/export.csv", {"actor": "alice", "sign_ins": "on"}))
    assert [row[3] for row in with_sign_ins[1:]] == ["sign-in", "alias.disable"]
    recorded = AuditEvent.objects.filter(action="audit.export").latest("id")
    assert recorded.detail == "Actor: alice; sign-ins included"


def test_cells_a_spreadsheet_would_run_as_formulas_are_defused(admin: Client) -> None:
    _event("alias.create", actor="alice", target='=HYPERLINK("http://evil")', detail="+1+cmd|' /C calc'!A0")
    row = _csv(admin.get("/audit/export.csv"))[1]
    assert row[4] == '\'=HYPERLINK("http://evil")' and row[5] == "'+1+cmd|' /C calc'!A0"


def test_a_large_log_streams_in_bounded_memory(admin: Client) -> None:
    count = 100_000
    AuditEvent.objects.bulk_create(
        (AuditEvent(action="alias.create", actor_name="alice", target=f"a{n}@alias.example.org", detail="x" * 60)
         for n in range(count)),
        batch_size=5000,
    )  # fmt: skip
    response = admin.get("/audit/export.csv")
    assert isinstance(response, StreamingHttpResponse)
    tracemalloc.start()
    lines = size = 0
    try:
        for chunk in response.streaming_content:
            lines += chunk.count(b"\r\n")
            size += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == count + 1
    assert peak < size / 4, (peak, size)  # never the whole export in memory


def test_a_bad_export_filter_shows_the_log_with_its_error_and_exports_nothing(admin: Client) -> None:
    _event("alias.create", actor="alice")
    response = admin.get("/audit/export.csv", {"since": "2026-03-10", "until": "2026-03-01"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    assert "The end date is before the start date." in response.content.decode()
    for name in ("actor", "target", "action", "since", "until", "sign_ins"):
        for value in NASTY:
            response = admin.get("/audit/export.csv", {name: value})
            assert response.status_code == 200, (name, value[:40])
            if not response.streaming:
                assert 'class="error"' in response.content.decode(), (name, value[:40])
    details = AuditEvent.objects.filter(action="audit.export").values_list("detail", flat=True)
    assert not any("\x00" in detail or "\n" in detail for detail in details)
