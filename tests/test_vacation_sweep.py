"""The beat sweep: ended vacations leave the maps, old reply-log entries go."""

from datetime import timedelta

import pytest
from django.utils import timezone

from outofoffice.models import ReplyLog, VacationReply
from outofoffice.routing import vacation_virtual_entries
from outofoffice.tasks import sweep_vacations
from postfix.publication import requested_generation

pytestmark = pytest.mark.django_db


def vacation(uid: str, ends_in: timedelta) -> VacationReply:
    return VacationReply.objects.create(
        uid=uid, address=f"{uid}@example.org", enabled=True, ends_at=timezone.now() + ends_in, subject="A", body="B"
    )


def test_a_vacation_that_just_ended_asks_for_a_publication_that_drops_its_copy():
    vacation("alice", timedelta(seconds=-5))
    before = requested_generation()
    sweep_vacations()
    assert requested_generation() == before + 1
    assert "alice@example.org" not in dict(vacation_virtual_entries())


def test_nothing_is_published_when_no_vacation_ended():
    vacation("bob", timedelta(days=1))
    vacation("carol", timedelta(days=-30))  # long gone: published away back then
    before = requested_generation()
    sweep_vacations()
    assert requested_generation() == before
    assert "bob@example.org" in dict(vacation_virtual_entries())


def test_reply_log_entries_older_than_any_interval_are_removed():
    away = vacation("dave", timedelta(days=1))
    now = timezone.now()
    ReplyLog.objects.create(vacation=away, sender="old@remote.example", reply_key="k", sent_at=now - timedelta(400))
    ReplyLog.objects.create(vacation=away, sender="new@remote.example", reply_key="k", sent_at=now - timedelta(300))
    sweep_vacations()
    assert list(ReplyLog.objects.values_list("sender", flat=True)) == ["new@remote.example"]
