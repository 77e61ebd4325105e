from datetime import UTC, date, datetime
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils.html import strip_tags

from audit.models import AuditEvent
from handover.links import note_url_for
from handover.models import HandoverNote, TopicDelegate, WorkItem

EDIT_URL = "/handover/edit/"
DEMO_PASSWORD = "correct horse battery staple"  # as in conftest


def item_row(title: str, **fields: str) -> dict[str, str]:
    row = {
        "title": title,
        "priority": "can-wait",
        "status": "",
        "deadline": "",
        "next_step": "",
        "next_step_owner": "",
        "context": "",
        "links": "",
        "blockers": "",
    }
    row.update(fields)
    return row


def note_post(
    primary: str,
    topics: list[tuple[str, str]] = (),  # type: ignore[assignment]
    items: list[dict[str, str]] = (),  # type: ignore[assignment]
    note: HandoverNote | None = None,
    **fields: str,
) -> dict[str, str]:
    """The form data the edit page submits; with `note`, rows line up with its existing rows."""
    data = {
        "starts_at": "2026-12-21T09:00",
        "ends_at": "2027-01-04T09:00",
        "time_zone": "Europe/Athens",
        "reachability": "Reachable by phone for emergencies only",
        "primary_delegate": primary,
        "pending_decisions": "",
        "contacts": "",
    }
    data.update(fields)
    existing_topics = list(note.topic_delegates.order_by("id")) if note else []
    existing_items = list(note.items.order_by("id")) if note else []
    for prefix, rows, existing in (("topics", topics, existing_topics), ("items", items, existing_items)):
        data[f"{prefix}-TOTAL_FORMS"] = str(len(rows))
        data[f"{prefix}-INITIAL_FORMS"] = str(len(existing))
        data[f"{prefix}-MIN_NUM_FORMS"] = "0"
        data[f"{prefix}-MAX_NUM_FORMS"] = "30"
        for i, row in enumerate(rows):
            if prefix == "topics":
                row = {"topic": row[0], "delegate": row[1]}
            for key, value in row.items():
                data[f"{prefix}-{i}-{key}"] = value
            if i < len(existing):
                data[f"{prefix}-{i}-id"] = str(existing[i].pk)
    return data


def make_note(author: Client, primary: str, **kwargs: Any) -> HandoverNote:
    response = author.post(EDIT_URL, note_post(primary, **kwargs))
    assert response.status_code == 302, response.content.decode()[:3000]
    return HandoverNote.objects.get(author__username=author.directory_user.uid)


@pytest.fixture
def shared_note(sign_in: Any, make_directory_user: Any) -> dict[str, Any]:
    """A note by a signed-in author naming a primary and a per-topic delegate."""
    author = sign_in()
    primary = make_directory_user()
    topic = make_directory_user()
    note = make_note(
        author,
        primary.uid,
        topics=[("Billing", topic.mail)],
        items=[item_row("Renew the TLS certificate", priority="urgent", deadline="2026-12-28")],
    )
    return {"author": author, "primary": primary, "topic": topic, "note": note}


@pytest.mark.django_db
def test_author_writes_a_structured_note_and_sees_it(sign_in: Any, make_directory_user: Any) -> None:
    author = sign_in()
    primary = make_directory_user()
    billing = make_directory_user()
    response = author.post(
        EDIT_URL,
        note_post(
            primary.mail.upper(),
            topics=[("Billing", billing.uid)],
            items=[
                item_row(
                    "Migrate the mailing lists",
                    priority="urgent",
                    status="Half the lists moved",
                    deadline="2026-12-23",
                    next_step="Move the remaining 12 lists",
                    next_step_owner="Carol",
                    context="We chose Mailman 3 over Sympa.",
                    links="https://tracker.example.org/issue/42\r\nhttp://wiki.example.org/lists",
                    blockers="Waiting for DNS change",
                )
            ],
            pending_decisions="Which archive retention to use",
            contacts="Dave (DNS): dave@example.org",
        ),
        follow=True,
    )
    assert response.redirect_chain[-1][0] == "/handover/"
    page = response.content.decode()
    for text in (
        "Your handover note is saved",
        "Reachable by phone for emergencies only",
        "Migrate the mailing lists",
        "Half the lists moved",
        "Move the remaining 12 lists",
        "Carol",
        "We chose Mailman 3 over Sympa.",
        'href="https://tracker.example.org/issue/42"',
        "Waiting for DNS change",
        "Which archive retention to use",
        "Dave (DNS)",
        "Billing",
        primary.mail,
        billing.mail,
        "Europe/Athens",
    ):
        assert text in page, text
    note = HandoverNote.objects.get(author__username=author.directory_user.uid)
    # 09:00 in Athens in winter is 07:00 UTC.
    assert note.starts_at == datetime(2026, 12, 21, 7, 0, tzinfo=UTC)
    assert note.primary_delegate_uid == primary.uid
    assert list(note.topic_delegates.values_list("topic", "delegate_uid")) == [("Billing", billing.uid)]
    item = note.items.get()
    assert item.link_list() == ["https://tracker.example.org/issue/42", "http://wiki.example.org/lists"]
    assert item.deadline == date(2026, 12, 23)
    event = AuditEvent.objects.get(action="handover.create")
    assert event.target == author.directory_user.uid
    assert "1 work items (1 urgent)" in event.detail


@pytest.mark.django_db
def test_author_edits_items_removes_one_and_the_change_is_audited(shared_note: dict[str, Any]) -> None:
    author, note = shared_note["author"], shared_note["note"]
    response = author.post(
        EDIT_URL,
        note_post(
            shared_note["primary"].uid,
            topics=[("Billing", shared_note["topic"].uid)],
            items=[item_row("Renew the TLS certificate", status="Ordered"), item_row("Answer the auditors")],
            note=note,
        )
        | {"topics-0-DELETE": "on"},
    )
    assert response.status_code == 302
    assert list(note.items.order_by("id").values_list("title", "status")) == [
        ("Renew the TLS certificate", "Ordered"),
        ("Answer the auditors", ""),
    ]
    assert not note.topic_delegates.exists()
    assert AuditEvent.objects.filter(action="handover.update", target=author.directory_user.uid).count() == 1


@pytest.mark.django_db
def test_add_another_item_saves_and_comes_back_with_a_blank_row(shared_note: dict[str, Any]) -> None:
    author, note = shared_note["author"], shared_note["note"]
    data = note_post(
        shared_note["primary"].uid,
        topics=[("Billing", shared_note["topic"].uid)],
        items=[item_row("Renew the TLS certificate", priority="urgent")],
        note=note,
    )
    response = author.post(EDIT_URL, data | {"add": "item"})
    assert response.status_code == 302
    assert response["Location"] == "/handover/edit/#new-item"
    page = author.get(EDIT_URL).content.decode()
    assert 'id="new-item"' in page
    assert 'name="items-TOTAL_FORMS" value="2"' in page
    # The window comes back as the author typed it, in their zone, whatever the viewer's zone.
    assert 'value="21 Dec 2026, 09:00"' in page


@pytest.mark.parametrize("viewer", ["author", "primary", "topic", "admin"])
@pytest.mark.django_db
def test_author_delegates_and_admins_can_read_the_note(shared_note: dict[str, Any], sign_in: Any, viewer: str) -> None:
    if viewer == "author":
        client = shared_note["author"]
    elif viewer == "admin":
        client = sign_in("admin")
    else:
        client = Client()
        client.post("/accounts/sign-in/", {"username": shared_note[viewer].uid, "password": DEMO_PASSWORD})
    note = shared_note["note"]
    for url in (f"/handover/{note.pk}/", f"/handover/{note.pk}/print/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert "Renew the TLS certificate" in response.content.decode()


@pytest.mark.parametrize("viewer", ["end user", "helpdesk"])
@pytest.mark.django_db
def test_anyone_not_named_gets_404_even_helpdesk(shared_note: dict[str, Any], sign_in: Any, viewer: str) -> None:
    client = sign_in(viewer)
    note = shared_note["note"]
    for url in (f"/handover/{note.pk}/", f"/handover/{note.pk}/print/"):
        assert client.get(url).status_code == 404
    assert client.get("/handover/shared/").content.decode().count("Renew the TLS") == 0


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_sign_in(shared_note: dict[str, Any]) -> None:
    note = shared_note["note"]
    for url in ("/handover/", EDIT_URL, "/handover/shared/", f"/handover/{note.pk}/", f"/handover/{note.pk}/print/"):
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/sign-in/")


@pytest.mark.django_db
def test_a_delegate_cannot_edit_the_note_they_were_handed(shared_note: dict[str, Any]) -> None:
    client = Client()
    client.post("/accounts/sign-in/", {"username": shared_note["primary"].uid, "password": DEMO_PASSWORD})
    # The edit page is always the signed-in user's own note: the delegate gets a blank form.
    page = client.get(EDIT_URL).content.decode()
    assert "Renew the TLS certificate" not in page
    assert "Write a handover note" in page


@pytest.mark.django_db
def test_printable_view_puts_urgent_items_first_then_nearest_deadline(sign_in: Any, make_directory_user: Any) -> None:
    author = sign_in()
    note = make_note(
        author,
        make_directory_user().uid,
        items=[
            item_row("Later no deadline"),
            item_row("Later soon", deadline="2026-12-22"),
            item_row("Urgent no deadline", priority="urgent"),
            item_row("Urgent far", priority="urgent", deadline="2027-01-30"),
            item_row("Urgent near", priority="urgent", deadline="2026-12-24"),
        ],
    )
    page = author.get(f"/handover/{note.pk}/print/").content.decode()
    order = ["Urgent near", "Urgent far", "Urgent no deadline", "Later soon", "Later no deadline"]
    positions = [page.index(title) for title in order]
    assert positions == sorted(positions)
    assert 'class="handover-print"' in page


@pytest.mark.django_db
def test_user_text_is_escaped_on_every_page(shared_note: dict[str, Any]) -> None:
    author, note = shared_note["author"], shared_note["note"]
    hostile = '<script>alert("x")</script>'
    author.post(
        EDIT_URL,
        note_post(
            shared_note["primary"].uid,
            items=[item_row(hostile, context=f"line one\n{hostile}")],
            note=note,
            reachability=hostile,
            contacts=hostile,
        ),
    )
    for url in ("/handover/", f"/handover/{note.pk}/", f"/handover/{note.pk}/print/", EDIT_URL):
        page = author.get(url).content.decode()
        assert "<script>alert" not in page, url
        assert "&lt;script&gt;alert(" in page, url


HOSTILE = {
    "newline in a title": {"items": [item_row("Renew\nBcc: x@evil.example")]},
    "control character in a status": {"items": [item_row("Renew", status="ok\x1b[2J")]},
    "bidi override in a next step owner": {
        "items": [item_row("Renew", next_step="Call", next_step_owner="\u202eloraC")]
    },
    "NUL in context": {"items": [item_row("Renew", context="a\x00b")]},
    "javascript link": {"items": [item_row("Renew", links="javascript:alert(1)")]},
    "data link": {"items": [item_row("Renew", links="data:text/html,<b>x</b>")]},
    "link without scheme": {"items": [item_row("Renew", links="tracker.example.org/42")]},
    "oversized context": {"items": [item_row("Renew", context="x" * 4001)]},
    "oversized title": {"items": [item_row("R" * 201)]},
    "next step without owner": {"items": [item_row("Renew", next_step="Call the vendor")]},
    "too many items": {"items": [item_row(f"Item {i}") for i in range(31)]},
    "newline in reachability": {"reachability": "phone\r\nX-Header: injected"},
    "line separator in a topic": {"topics": [("Billing\u2028Evil", "PRIMARY")]},
    "unknown delegate": {"primary_delegate": "nobody-here"},
    "unknown delegate mail": {"primary_delegate": "nobody@example.org"},
    "LDAP filter in delegate": {"primary_delegate": "*)(uid=*"},
    "LDAP filter in delegate mail": {"primary_delegate": "a*)(mail=*@example.org"},
    "author as own delegate": {"primary_delegate": "AUTHOR"},
    "end before start": {"ends_at": "2026-12-20T09:00"},
    "unknown time zone": {"time_zone": "Mars/Olympus_Mons"},
    "time skipped by DST": {"starts_at": "2027-03-28T03:30", "ends_at": "2027-04-02T09:00"},
    "absence longer than a year": {"ends_at": "2028-01-04T09:00"},
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
@pytest.mark.django_db
def test_hostile_input_is_refused_and_nothing_changes(shared_note: dict[str, Any], case: str) -> None:
    author, note = shared_note["author"], shared_note["note"]
    primary = shared_note["primary"].uid
    overrides = dict(HOSTILE[case])
    if overrides.get("primary_delegate") == "AUTHOR":
        overrides["primary_delegate"] = author.directory_user.uid
    topics = [(t, primary if d == "PRIMARY" else d) for t, d in overrides.pop("topics", [("Billing", primary)])]
    items = overrides.pop("items", [item_row("Renew the TLS certificate")])
    before = (
        list(HandoverNote.objects.values()),
        list(TopicDelegate.objects.values()),
        list(WorkItem.objects.values()),
        AuditEvent.objects.count(),
    )
    response = author.post(EDIT_URL, note_post(primary, topics=topics, items=items, note=note, **overrides))
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    after = (
        list(HandoverNote.objects.values()),
        list(TopicDelegate.objects.values()),
        list(WorkItem.objects.values()),
        AuditEvent.objects.count(),
    )
    assert after == before


@pytest.mark.django_db
def test_shared_with_me_lists_only_notes_naming_me(sign_in: Any, make_directory_user: Any) -> None:
    me = sign_in()
    uid = me.directory_user.uid
    other = make_directory_user()
    as_primary = make_note(sign_in(), uid, items=[item_row("Primary job", priority="urgent")])
    as_topic = make_note(sign_in(), other.uid, topics=[("Payroll", me.directory_user.mail)])
    not_mine = make_note(sign_in(), other.uid)
    page = me.get("/handover/shared/").content.decode()
    assert f'href="/handover/{as_primary.pk}/"' in page
    assert f'href="/handover/{as_topic.pk}/"' in page
    assert f'href="/handover/{not_mine.pk}/"' not in page
    assert "Primary delegate" in page
    assert "Payroll" in page


@pytest.mark.django_db
def test_shared_with_me_page_runs_a_fixed_number_of_queries(
    sign_in: Any, make_directory_user: Any, django_assert_num_queries: Any
) -> None:
    me = sign_in()
    uid = me.directory_user.uid
    make_note(sign_in(), uid, topics=[("Billing", uid)], items=[item_row("One", priority="urgent")])
    with CaptureQueriesContext(connection) as one_note:
        assert me.get("/handover/shared/").status_code == 200
    # The page's own: notes with their urgent counts, then their topic delegates. The rest
    # (session, user, role, banners of other features) is the same on every page.
    assert len([q for q in one_note.captured_queries if '"handover_' in q["sql"]]) == 2
    pinned = len(one_note)  # read now: every request clears Django's query log
    for _ in range(3):
        make_note(sign_in(), make_directory_user().uid, topics=[("Billing", uid)], items=[item_row("Two")])
    with django_assert_num_queries(pinned):
        page = me.get("/handover/shared/").content.decode()
    assert page.count("Billing") == 4


@pytest.mark.django_db
def test_deleting_the_note_is_audited_and_delegates_lose_access(shared_note: dict[str, Any]) -> None:
    author, note = shared_note["author"], shared_note["note"]
    assert author.post("/handover/delete/").status_code == 302
    assert not HandoverNote.objects.filter(pk=note.pk).exists()
    assert AuditEvent.objects.filter(action="handover.delete", target=author.directory_user.uid).count() == 1
    delegate = Client()
    delegate.post("/accounts/sign-in/", {"username": shared_note["primary"].uid, "password": DEMO_PASSWORD})
    assert delegate.get(f"/handover/{note.pk}/").status_code == 404


@pytest.mark.django_db
def test_note_url_for_gives_the_path_of_a_users_note_or_none(shared_note: dict[str, Any]) -> None:
    note = shared_note["note"]
    assert note_url_for(shared_note["author"].directory_user.uid) == f"/handover/{note.pk}/"
    assert note_url_for(shared_note["primary"].uid) is None
    assert note_url_for("*") is None


@pytest.mark.django_db
def test_window_shows_in_the_authors_zone_and_in_the_readers_own(shared_note: dict[str, Any]) -> None:
    reader = Client()
    reader.post("/accounts/sign-in/", {"username": shared_note["primary"].uid, "password": DEMO_PASSWORD})
    reader.cookies["tz"] = "America/New_York"
    page = strip_tags(reader.get(f"/handover/{shared_note['note'].pk}/").content.decode())
    # Entered as 09:00 in Athens (UTC+2 in winter): 02:00 in New York (UTC-5).
    assert "21 Dec 2026, 09:00 to 4 Jan 2027, 09:00 (Europe/Athens)" in page
    assert "Your time (America/New_York): 21 Dec 2026, 02:00" in page
    shared = strip_tags(reader.get("/handover/shared/").content.decode())
    assert "21 Dec 2026, 09:00" in shared


@pytest.mark.django_db
def test_a_new_note_starts_in_the_viewers_time_zone(sign_in: Any) -> None:
    author = sign_in()
    author.cookies["tz"] = "Asia/Tokyo"
    page = author.get(EDIT_URL).content.decode()
    assert '<option value="Asia/Tokyo" selected>' in page


@pytest.mark.django_db
def test_a_forged_row_id_cannot_touch_another_users_note(
    shared_note: dict[str, Any], sign_in: Any, make_directory_user: Any
) -> None:
    victim = shared_note["note"]
    victim_item = victim.items.get()
    attacker = sign_in()
    data = note_post(make_directory_user().uid, items=[item_row("Hijacked")])
    data |= {"items-INITIAL_FORMS": "1", "items-0-id": str(victim_item.pk)}
    response = attacker.post(EDIT_URL, data)
    assert response.status_code == 200
    assert "This page is out of date" in response.content.decode()
    victim_item.refresh_from_db()
    assert victim_item.title == "Renew the TLS certificate"
    assert not HandoverNote.objects.filter(author__username=attacker.directory_user.uid).exists()


@pytest.mark.django_db
def test_an_absurd_row_count_is_refused_without_building_the_rows(shared_note: dict[str, Any]) -> None:
    author, note = shared_note["author"], shared_note["note"]
    data = note_post(shared_note["primary"].uid, items=[item_row("Renew the TLS certificate")], note=note)
    data["items-TOTAL_FORMS"] = "100000000"
    response = author.post(EDIT_URL, data)
    assert response.status_code == 200
    assert "Please submit at most 30 forms" in response.content.decode()
    assert note.items.count() == 1


@pytest.mark.django_db
def test_admins_list_every_note_and_find_one_by_author_or_delegate(
    sign_in: Any, make_directory_user: Any, shared_note: dict[str, Any]
) -> None:
    primary = make_directory_user()
    second = make_note(sign_in(), primary.uid, items=[item_row("A", priority="urgent"), item_row("B")])
    admin = sign_in("admin")
    page = admin.get("/handover/all/").content.decode()
    for note in (shared_note["note"], second):
        assert f'href="/handover/{note.pk}/"' in page
    assert "2 notes" in page
    assert 'href="/handover/all/" aria-current="page"' in page  # in the admin menu
    found = admin.get("/handover/all/", {"q": primary.uid}).content.decode()
    assert f'href="/handover/{second.pk}/"' in found
    assert f'href="/handover/{shared_note["note"].pk}/"' not in found
    assert '<span class="badge badge-danger">1</span>' in found  # one urgent item of two
    # The query is shown escaped, never interpreted.
    hostile = admin.get("/handover/all/", {"q": "<script>x</script>"}).content.decode()
    assert "<script>x</script>" not in hostile and "No note matches" in hostile
    # Control characters (a NUL would break the PostgreSQL query) are refused, not searched.
    refused = admin.get("/handover/all/", {"q": "a\x00b"}).content.decode()
    assert "control characters" in refused and "Fix the search above" in refused
    assert f'href="/handover/{second.pk}/"' not in refused


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["end user", "helpdesk"])
def test_only_admins_see_the_list_of_all_notes(shared_note: dict[str, Any], sign_in: Any, role: str) -> None:
    assert sign_in(role).get("/handover/all/").status_code == 403
    # Nor a note's author: the list is the admins' overview.
    assert shared_note["author"].get("/handover/all/").status_code == 403
