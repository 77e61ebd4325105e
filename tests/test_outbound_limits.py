"""Outbound limits (issue 15): counting, the soft and hard steps, automatic suspension through the
one suspension path, notices, the shared counters and their per-host fallback, the admin pages."""

import logging
import secrets
from collections.abc import Callable
from concurrent.futures import Executor, Future
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from accounts import directory, suspension
from accounts.models import SenderSuspension
from audit.models import AuditEvent
from limits import services
from limits.counters import Counters
from limits.models import SendingLimit
from limits.rules import Counts, Limits, Verdict, decide
from notices import services as notices
from notices.models import Notice
from tests.test_second_factor import delivered_message, publish

pytestmark = pytest.mark.django_db
LIMITS = Limits(
    messages_per_hour=10, recipients_per_hour=20, recipients_per_day=100, recipients_per_message=5, hard_factor=3
)
SMALL = {
    "LIMIT_MESSAGES_PER_HOUR": 1000,
    "LIMIT_RECIPIENTS_PER_HOUR": 20,
    "LIMIT_RECIPIENTS_PER_DAY": 1000,
    "LIMIT_RECIPIENTS_PER_MESSAGE": 50,
    "LIMIT_HARD_FACTOR": 3,
}


class Inline(Executor):
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def rcpt(login: str = "", sender: str = "", instance: str = "m1", client: str = "203.0.113.9") -> dict[str, str]:
    return {
        "request": "smtpd_access_policy",
        "protocol_state": "RCPT",
        "sasl_username": login,
        "sender": sender,
        "recipient": f"r{secrets.token_hex(3)}@example.net",
        "client_address": client,
        "instance": instance,
    }


def test_below_every_limit_mail_is_sent() -> None:
    assert decide(Counts(10, 20, 100), LIMITS, 5).verdict is Verdict.SEND


def test_past_a_soft_limit_mail_is_deferred_and_past_the_hard_one_the_sender_is_suspended() -> None:
    assert decide(Counts(1, 21, 21), LIMITS, 1).verdict is Verdict.DEFER
    assert decide(Counts(11, 1, 1), LIMITS, 1).verdict is Verdict.DEFER
    assert decide(Counts(1, 1, 101), LIMITS, 1).verdict is Verdict.DEFER
    suspended = decide(Counts(1, 61, 61), LIMITS, 1)
    assert suspended == (suspended.__class__(Verdict.SUSPEND, "automatic: 61 recipients in 1 hour (hard limit 60)"))
    assert decide(Counts(1, 1, 301), LIMITS, 1).verdict is Verdict.SUSPEND


def test_too_many_recipients_in_one_message_are_deferred_but_never_suspend() -> None:
    assert decide(Counts(1, 6, 6), LIMITS, 6).verdict is Verdict.DEFER
    assert decide(Counts(1, 6, 6), LIMITS, 5).verdict is Verdict.SEND


def test_two_mail_hosts_count_into_one_store() -> None:
    login = f"flood{secrets.token_hex(4)}"
    first, second = Counters(settings.REDIS_URL), Counters(settings.REDIS_URL)
    for _ in range(5):
        first.add(login, messages=1, recipients=3)
        counts = second.add(login, messages=1, recipients=3)
    assert counts == Counts(messages_hour=10, recipients_hour=30, recipients_day=30)


def test_the_hour_window_slides_and_the_day_window_keeps_older_hours() -> None:
    login = f"slide{secrets.token_hex(4)}"
    clock = [1_800_000_000.0]
    counters = Counters(settings.REDIS_URL, clock=lambda: clock[0])
    counters.add(login, messages=1, recipients=7)
    clock[0] += 30 * 60
    assert counters.add(login, messages=1, recipients=1).recipients_hour == 8
    clock[0] += 31 * 60  # the first count is 61 minutes old now
    counts = counters.add(login, messages=1, recipients=1)
    assert (counts.recipients_hour, counts.recipients_day, counts.messages_hour) == (2, 9, 2)


def test_with_the_store_down_counting_goes_on_per_host_and_the_log_says_so(caplog) -> None:
    counters = Counters("redis://127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING, logger="limits.counters"):
        for _ in range(25):
            counts = counters.add("alice", messages=0, recipients=1)
    assert counts.recipients_hour == 25
    assert decide(counts, LIMITS, 1).verdict is Verdict.DEFER
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "counting on this host only" in warnings[0]


def test_the_heaviest_senders_are_ranked_by_recipients() -> None:
    prefix = f"test:{secrets.token_hex(4)}"
    counters = Counters(settings.REDIS_URL, prefix=prefix)
    for login, recipients in (("light", 2), ("heavy", 40), ("middle", 9)):
        counters.add(login, messages=1, recipients=recipients)
    ranked = counters.heaviest("hour")
    assert [(s.login, s.recipients, s.messages) for s in ranked] == [
        ("heavy", 40, 1),
        ("middle", 9, 1),
        ("light", 2, 1),
    ]
    assert [s.login for s in counters.heaviest("day")] == ["heavy", "middle", "light"]


def test_mail_from_outside_without_a_login_is_not_outbound() -> None:
    guard = services.build_guard(services.OutboundSnapshot.load, Inline())
    assert guard.login_of(rcpt(sender=f"x@{settings.MAIL_DOMAIN}")) is None  # not a local client
    assert guard.login_of(rcpt(sender="x@example.net", client="127.0.0.1")) is None  # not our domain
    assert guard.login_of(rcpt(sender=f"X@{settings.MAIL_DOMAIN}", client="127.0.0.1")) == f"x@{settings.MAIL_DOMAIN}"
    assert guard.login_of(rcpt(login="Alice")) == "alice"
    assert guard.check({**rcpt(login="alice"), "protocol_state": "DATA"}) is None


@override_settings(**SMALL)
def test_a_flood_from_one_login_is_stopped_at_the_hard_limit_and_the_sender_suspended(make_directory_user) -> None:
    person = make_directory_user()
    make_directory_user(role="admin")
    guard = services.build_guard(services.OutboundSnapshot.load, Inline())
    answers = []
    for message in range(500):  # 5,000 recipients in messages of 10
        for _ in range(10):
            answers.append(guard.check(rcpt(login=person.uid, instance=f"{person.uid}-{message}")))
    sent = answers.count(None)
    deferred = [a for a in answers if a and a.startswith("451 4.7.1")]
    refused = [a for a in answers if a and a.startswith("554 5.7.1")]
    assert sent == 20 and len(deferred) == 40  # soft 20, hard 60 recipients in an hour
    assert len(refused) == 5000 - 60 and refused[0] == f"554 5.7.1 {settings.SUSPENSION_REJECT_TEXT}"
    row = SenderSuspension.objects.active().get(uid=person.uid)
    assert row.created_by_name == "system" and row.reason == "automatic: 61 recipients in 1 hour (hard limit 60)"
    assert abs((row.until - timezone.now()) - timedelta(seconds=settings.LIMIT_SUSPENSION_SECONDS)) < timedelta(
        minutes=1
    )
    assert directory.get_user(person.uid).sender_blocked is True
    event = AuditEvent.objects.get(action="suspension.suspend", target=person.uid)
    assert event.actor_name == "" and "automatic: 61 recipients" in event.detail
    kinds = dict(Notice.objects.values_list("to_address", "kind").filter(kind__startswith="suspension"))
    assert kinds[person.mail] == "suspension" and "suspension-admin" in kinds.values()
    assert any(row.reason in n.body for n in Notice.objects.filter(kind="suspension-admin"))


@override_settings(**SMALL)
def test_a_local_sender_without_a_login_is_counted_by_envelope_sender_and_suspended_by_owner(
    make_directory_user,
) -> None:
    person = make_directory_user()
    guard = services.build_guard(services.OutboundSnapshot.load, Inline())
    for n in range(61):
        answer = guard.check(rcpt(sender=person.mail, client="127.0.0.1", instance=f"{person.uid}-{n}"))
    assert answer == f"554 5.7.1 {settings.SUSPENSION_REJECT_TEXT}"
    assert suspension.is_suspended(person.uid)


@override_settings(**SMALL)
def test_a_lifted_suspension_starts_the_count_afresh(make_directory_user) -> None:
    person = make_directory_user()
    guard = services.build_guard(services.OutboundSnapshot.load, Inline())
    answers = [guard.check(rcpt(login=person.uid, instance=f"{person.uid}-{n}")) for n in range(61)]
    assert answers[-1].startswith("554 5.7.1") and suspension.is_suspended(person.uid)
    suspension.reinstate(person.uid, actor=None)
    after = [guard.check(rcpt(login=person.uid, instance=f"{person.uid}-again-{n}")) for n in range(21)]
    assert after[:20] == [None] * 20 and after[20].startswith("451 4.7.1")
    assert not suspension.is_suspended(person.uid)


def test_person_limits_beat_domain_limits_which_beat_the_defaults() -> None:
    SendingLimit.objects.create(scope="domain", name="example.org", recipients_per_hour=500, recipients_per_day=5000)
    SendingLimit.objects.create(scope="person", name="bob", recipients_per_hour=50)
    bob = services.effective_limits("bob", "bob@example.org")
    carol = services.effective_limits("carol", "carol@example.org")
    dave = services.effective_limits("dave", "dave@example.net")
    assert (bob.recipients_per_hour, bob.recipients_per_day) == (50, 5000)
    assert (carol.recipients_per_hour, carol.recipients_per_day) == (500, 5000)
    assert dave == services.default_limits()


def test_an_admin_sets_limits_and_they_show_on_the_users_page(sign_in, make_directory_user) -> None:
    person = make_directory_user()
    admin = sign_in("admin")
    response = admin.post(reverse("limits:list"), {"scope": "person", "name": person.uid, "recipients_per_hour": "42"})
    assert response.status_code == 302
    page = admin.get(reverse("directory:detail", kwargs={"uid": person.uid})).content.decode()
    assert "<td>Recipients per hour</td><td>42</td><td>126</td>" in page
    assert AuditEvent.objects.filter(action="limits.set", target=f"person {person.uid}").exists()
    row = SendingLimit.objects.get(name=person.uid)
    assert admin.post(reverse("limits:delete", kwargs={"pk": row.pk})).status_code == 302
    assert not SendingLimit.objects.exists()


@pytest.mark.parametrize(
    ("scope", "name"),
    [("person", "nobody-here"), ("person", "*)(uid=*"), ("domain", "exa mple.org"), ("domain", "<b>x</b>.org")],
)
def test_limits_for_nobody_or_hostile_names_are_refused_and_nothing_saved(sign_in, scope, name) -> None:
    admin = sign_in("admin")
    response = admin.post(reverse("limits:list"), {"scope": scope, "name": name, "recipients_per_hour": "5"})
    assert response.status_code == 200 and not SendingLimit.objects.exists()


def test_a_limit_must_be_a_positive_number(sign_in) -> None:
    admin = sign_in("admin")
    for value in ("0", "-3", "10000001", "1e9"):
        admin.post(reverse("limits:list"), {"scope": "domain", "name": "example.org", "recipients_per_hour": value})
    assert not SendingLimit.objects.exists()


def test_the_senders_page_lists_automatic_suspensions_and_heavy_senders(sign_in, make_directory_user) -> None:
    person = make_directory_user()
    suspension.suspend(person.uid, "automatic: 99 recipients in 1 hour (hard limit 60)", None, actor=None)
    Counters(settings.LIMIT_COUNTER_URL).add(f"heavy-{person.uid}", messages=1, recipients=77)
    page = sign_in("admin").get(reverse("limits:senders")).content.decode()
    assert (
        "automatic: 99 recipients in 1 hour" in page
        and reverse("directory:reinstate", kwargs={"uid": person.uid}) in page
    )
    assert f"heavy-{person.uid}" in page


def test_the_senders_page_reuses_one_redis_connection_across_requests(sign_in) -> None:
    admin = sign_in("admin")
    admin.get(reverse("limits:senders"))  # the process's client opens its connection
    server = redis.Redis.from_url(settings.LIMIT_COUNTER_URL)
    before = server.info("stats")["total_connections_received"]
    for _ in range(5):
        assert admin.get(reverse("limits:senders")).status_code == 200
    after = server.info("stats")["total_connections_received"]
    assert after - before <= 1  # this test's own connection; a client per request would open five


def test_the_senders_page_says_when_the_counters_are_down(sign_in) -> None:
    admin = sign_in("admin")
    with override_settings(LIMIT_COUNTER_URL="redis://127.0.0.1:1/0"):
        page = admin.get(reverse("limits:senders")).content.decode()
    assert "not answering" in page


def test_an_admin_who_ticks_tell_them_has_the_person_and_the_admins_told(sign_in, make_directory_user) -> None:
    person = make_directory_user()
    quiet = make_directory_user()
    admin = sign_in("admin")
    admin.post(reverse("directory:suspend", kwargs={"uid": quiet.uid}), {"reason": "Phishing"})
    assert not Notice.objects.filter(to_address=quiet.mail).exists()
    admin.post(reverse("directory:suspend", kwargs={"uid": person.uid}), {"reason": "Phishing run", "tell": "on"})
    told = Notice.objects.get(to_address=person.mail)
    assert "Phishing run" in told.body and settings.ABUSE_CONTACT in told.body and "by an administrator" in told.body
    assert Notice.objects.filter(kind="suspension-admin", to_address=admin.directory_user.mail).exists()


def test_notices_to_one_address_are_held_back_past_the_hourly_share() -> None:
    with override_settings(NOTICE_MAX_PER_HOUR=2, MAIL_SUBMISSION_PORT=1):
        made = [notices.queue("x@example.org", "s", "b", "test") for _ in range(4)]
    assert [n.skipped for n in made if n] == [False, False, True, True]
    assert notices.queue("bad\r\nBcc: all@example.org", "s", "b", "test") is None


@pytest.mark.e2e
def test_the_suspension_notice_arrives_through_postfix_with_the_null_sender(
    sign_in, make_directory_user, django_capture_on_commit_callbacks
) -> None:
    person = make_directory_user()
    admin = sign_in("admin")
    publish()
    with django_capture_on_commit_callbacks(execute=True):
        admin.post(reverse("directory:suspend", kwargs={"uid": person.uid}), {"reason": "Spam run", "tell": "on"})
    mail = delivered_message(person.mail)
    assert "Subject: Sending mail from your account is suspended" in mail
    assert "Return-Path: <>" in mail and "Spam run" in mail
    assert Notice.objects.get(to_address=person.mail).sent_at is not None


def test_the_admin_overview_marks_automatic_suspensions(sign_in, make_directory_user) -> None:
    person = make_directory_user()
    suspension.suspend(person.uid, "automatic: 901 recipients in 1 hour (hard limit 900)", None, actor=None)
    page = sign_in("admin").get(reverse("home")).content.decode()
    assert person.uid in page and ">automatic</span>" in page and reverse("limits:senders") in page
