from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import directory
from accounts.models import SenderSuspension
from aliases.models import Alias, Domain
from audit.models import AuditEvent
from handover.models import HandoverNote
from outofoffice.models import ReplyLog, VacationReply

pytestmark = pytest.mark.django_db


@pytest.fixture
def ldap_round_trips(monkeypatch):
    """How many LDAP connections the code under test opens (the real directory still answers)."""
    opened = []
    real = directory.connection

    def counting():
        opened.append(1)
        return real()

    monkeypatch.setattr(directory, "connection", counting)
    return opened


def _aliases(owner: User, count: int, enabled: bool = True) -> None:
    domain, _ = Domain.objects.get_or_create(name=settings.ALIAS_DOMAIN, defaults={"is_alias_domain": True})
    Alias.objects.bulk_create(
        Alias(owner=owner, local_part=f"site{owner.pk}x{i}", domain=domain, kind=Alias.Kind.PER_SITE, enabled=enabled)
        for i in range(count)
    )


def _user(client) -> User:
    return User.objects.get(username=client.directory_user.uid)


def test_new_end_user_sees_what_to_do_next(sign_in) -> None:
    html = sign_in("end user").get("/").content.decode()
    assert "None yet" in html
    assert "Set a vacation reply" in html
    assert "Change password" in html
    assert "Helpdesk" not in html and "Audit log" not in html


def test_end_user_overview_counts_active_aliases_and_shows_vacation(sign_in) -> None:
    client = sign_in("end user")
    user = _user(client)
    _aliases(user, 3)
    Alias.objects.filter(owner=user).order_by("id").first().__class__.objects.filter(
        pk=Alias.objects.filter(owner=user).order_by("id").first().pk
    ).update(enabled=False)
    VacationReply.objects.create(
        uid=user.username, address=user.email, enabled=True, subject="Away", ends_at=timezone.now() + timedelta(days=3)
    )
    html = client.get("/").content.decode()
    assert "2 <small>active of 3</small>" in html
    assert "Away" in html and "until" in html


def test_overview_shows_own_handover_note_and_notes_naming_me(sign_in, make_directory_user) -> None:
    client = sign_in("end user")
    me = _user(client)
    colleague = User.objects.create(username="colleague1", first_name="Cora", last_name="Lee")
    start = timezone.now() + timedelta(days=10)
    HandoverNote.objects.create(
        author=me,
        starts_at=start,
        ends_at=start + timedelta(days=7),
        primary_delegate_uid="colleague1",
        primary_delegate_name="Cora Lee",
    )
    handed = HandoverNote.objects.create(
        author=colleague, starts_at=start, ends_at=start + timedelta(days=3), primary_delegate_uid=me.username
    )
    html = client.get("/").content.decode()
    assert "Cora Lee covers for you" in html
    assert "Handed to you" in html and f"/handover/{handed.pk}/" in html


def test_helpdesk_overview_lists_current_vacations(sign_in) -> None:
    helpdesk = sign_in("helpdesk")
    VacationReply.objects.create(uid="carol", address="carol@example.org", enabled=True, subject="Out")
    VacationReply.objects.create(
        uid="dave", address="dave@example.org", enabled=True, ends_at=timezone.now() - timedelta(days=1)
    )
    html = helpdesk.get("/").content.decode()
    assert "/out-of-office/helpdesk/carol/" in html
    assert "dave" not in html
    assert "Find a user" in html
    assert "Audit log" not in html


def test_admin_overview_shows_latest_changes_suspensions_and_map_state(sign_in) -> None:
    admin = sign_in("admin")
    AuditEvent.objects.create(action="alias.disable", actor_name="alice", target="shop@alias.example.org")
    SenderSuspension.objects.create(uid="mallory", mail="mallory@example.org", reason="spam run")
    html = admin.get("/").content.decode()
    assert "/directory/users/mallory/" in html
    assert "shop@alias.example.org" in html
    assert "Open the audit log" in html
    assert "never published" in html


@pytest.mark.parametrize("role", ["end user", "helpdesk", "admin"])
def test_home_page_queries_and_ldap_round_trips_do_not_grow_with_data(sign_in, ldap_round_trips, role) -> None:
    client = sign_in(role)
    client.get("/")

    def measure() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/").status_code == 200
        return len(captured)

    few = measure()
    _aliases(_user(client), 200)
    VacationReply.objects.bulk_create(
        VacationReply(uid=f"v{i}", address=f"v{i}@example.org", enabled=True) for i in range(50)
    )
    AuditEvent.objects.bulk_create(AuditEvent(action="x", actor_name=f"a{i}") for i in range(200))
    ldap_round_trips.clear()
    assert measure() == few
    assert ldap_round_trips == []
    # session, user (with its staff groups for the role and whether it is suspended, for the
    # banner), then aliases: counts + recent, own vacation,
    # own handover note, notes handed to me; helpdesk: current vacations + count; admin: suspensions +
    # count, map generation, publications, events, replies in the last hour + users at the reply cap;
    # own aliases flagged as possibly leaked (activity).
    assert few == {"end user": 8, "helpdesk": 10, "admin": 17}[role]


def test_admins_see_who_reached_the_vacation_reply_cap(sign_in, settings) -> None:
    settings.VACATION_REPLIES_PER_USER_HOUR = 2
    vacation = VacationReply.objects.create(uid="mallory", address="mallory@example.org", enabled=True)
    for n in range(2):
        ReplyLog.objects.create(vacation=vacation, sender=f"s{n}@x.example", reply_key="k", sent_at=timezone.now())
    html = sign_in("admin").get("/").content.decode()
    assert "Capped at 2 an hour" in html
    assert "/directory/users/mallory/" in html
