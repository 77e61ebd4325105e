"""The vacation pages: a user for themselves, helpdesk for anyone, and the preview."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings

from audit.models import AuditEvent
from localservices.slapd import Slapd
from outofoffice.models import VacationReply
from outofoffice.routing import vacation_transport_entries, vacation_virtual_entries

pytestmark = pytest.mark.django_db

GOOD = {
    "enabled": "on",
    "starts_at": "2030-07-01T08:00",
    "ends_at": "2030-07-15T18:00",
    "subject": "Away in July",
    "body": "I am away until 15 July.",
    "internal_body": "",
    "delegate": "Bob Baker <bob@example.org>",
    "interval_days": "7",
}


def test_a_user_sets_their_own_vacation_and_it_is_audited(sign_in):
    client = sign_in("end user")
    page = client.get("/out-of-office/vacation/")
    assert b"goes to whoever writes" in page.content
    response = client.post("/out-of-office/vacation/", GOOD)
    assert response.status_code == 302
    uid = client.directory_user.uid
    vacation = VacationReply.objects.get(uid=uid)
    assert vacation.enabled and vacation.address == client.directory_user.mail
    assert vacation.subject == "Away in July" and vacation.interval_days == 7
    event = AuditEvent.objects.get(action="vacation.set", target=uid)
    assert event.actor_name == uid and "I am away" not in event.detail


def test_start_and_end_are_read_in_the_configured_time_zone(sign_in, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    client = sign_in("end user")
    client.cookies["tz"] = "Not/AZone"  # an unusable browser zone: the configured one applies, and is named
    page = client.get("/out-of-office/vacation/").content.decode()
    assert "Time zone Europe/Berlin. Empty: from now on." in page
    assert "UTC" not in page
    client.post("/out-of-office/vacation/", GOOD)
    vacation = VacationReply.objects.get(uid=client.directory_user.uid)
    berlin = ZoneInfo("Europe/Berlin")
    assert vacation.starts_at == datetime(2030, 7, 1, 8, 0, tzinfo=berlin)
    assert vacation.ends_at == datetime(2030, 7, 15, 18, 0, tzinfo=berlin)


def test_the_routing_entries_copy_mail_of_users_on_vacation_to_the_responder(sign_in):
    client = sign_in("end user")
    client.post("/out-of-office/vacation/", GOOD)
    mailbox = client.directory_user.mail
    local, domain = mailbox.split("@")
    # First hop: the hand-off smtpd, which re-queues the copy with NOTIFY=NEVER for the responder.
    handoff = f"handoff.{settings.VACATION_ROUTING_DOMAIN}"
    assert (mailbox, f"{local}={domain}@{handoff}") in vacation_virtual_entries()
    assert vacation_transport_entries() == [
        (handoff, f"mailadmin-autoreply:[127.0.0.1]:{settings.VACATION_HANDOFF_PORT}"),
        (settings.VACATION_ROUTING_DOMAIN, f"lmtp:inet:127.0.0.1:{settings.RESPONDER_PORT}"),
    ]
    client.post("/out-of-office/vacation/", {**GOOD, "enabled": ""})
    assert mailbox not in dict(vacation_virtual_entries())


def test_an_ended_vacation_is_no_longer_routed(sign_in):
    client = sign_in("end user")
    client.post("/out-of-office/vacation/", {**GOOD, "starts_at": "2020-01-01T00:00", "ends_at": "2020-01-02T00:00"})
    assert VacationReply.objects.get(uid=client.directory_user.uid).enabled
    assert client.directory_user.mail not in dict(vacation_virtual_entries())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", "Away\r\nBcc: victim@remote.example"),
        ("subject", "Away\nX-Injected: yes"),
        ("subject", "Away\x00"),
        ("subject", "Away\u2028Bcc: victim@remote.example"),
        ("delegate", "Bob\r\nBcc: victim@remote.example"),
        ("body", "Away\x00\x1b[31m"),
        ("subject", "x" * 151),
        ("body", "x" * 4001),
        ("interval_days", "0"),
        ("interval_days", "-3"),
        ("interval_days", "366"),
        ("ends_at", "2030-06-30T08:00"),
        ("starts_at", "not a date"),
    ],
)
def test_hostile_or_invalid_input_is_refused_and_changes_nothing(sign_in, field, value):
    client = sign_in("end user")
    client.post("/out-of-office/vacation/", GOOD)
    before = VacationReply.objects.get(uid=client.directory_user.uid)
    response = client.post("/out-of-office/vacation/", {**GOOD, field: value, "subject": "Changed"} | {field: value})
    assert response.status_code == 200
    assert b'class="error"' in response.content
    after = VacationReply.objects.get(uid=client.directory_user.uid)
    assert (after.subject, after.body, after.delegate, after.interval_days, after.ends_at) == (
        before.subject,
        before.body,
        before.delegate,
        before.interval_days,
        before.ends_at,
    )
    assert AuditEvent.objects.filter(action="vacation.set").count() == 1


def test_a_reply_needs_a_subject_and_a_text_when_switched_on(sign_in):
    client = sign_in("end user")
    response = client.post("/out-of-office/vacation/", {**GOOD, "subject": "", "body": ""})
    assert response.status_code == 200
    assert not VacationReply.objects.exists()


def test_the_interval_defaults_to_seven_days(sign_in):
    client = sign_in("end user")
    assert b'value="7"' in client.get("/out-of-office/vacation/").content


def test_helpdesk_sets_and_clears_a_users_vacation_without_their_password(sign_in, make_directory_user):
    target = make_directory_user(role="end user")
    helpdesk = sign_in("helpdesk")
    found = helpdesk.get("/out-of-office/helpdesk/", {"q": target.uid})
    assert target.uid.encode() in found.content
    url = f"/out-of-office/helpdesk/{target.uid}/"
    assert helpdesk.post(url, GOOD).status_code == 302
    vacation = VacationReply.objects.get(uid=target.uid)
    assert vacation.enabled and vacation.address == target.mail
    assert vacation.updated_by == helpdesk.directory_user.uid
    event = AuditEvent.objects.get(action="vacation.set", target=target.uid)
    assert event.actor_name == helpdesk.directory_user.uid
    assert b"Away in July" in helpdesk.get(url).content
    # July 2030 lies ahead: the reply is scheduled, not on.
    assert b"scheduled</span> from" in helpdesk.get("/out-of-office/helpdesk/", {"q": target.uid}).content
    assert helpdesk.post(f"{url}clear/", {"confirm": "yes"}).status_code == 302
    assert not VacationReply.objects.filter(uid=target.uid).exists()
    assert AuditEvent.objects.get(action="vacation.clear", target=target.uid).actor_name == helpdesk.directory_user.uid


def test_the_helpdesk_form_names_the_helpdesk_viewers_own_time_zone(sign_in, make_directory_user):
    target = make_directory_user(role="end user")
    helpdesk = sign_in("helpdesk")
    helpdesk.cookies["tz"] = "America/New_York"
    page = helpdesk.get(f"/out-of-office/helpdesk/{target.uid}/").content.decode()
    assert "Time zone America/New_York. Replies stop exactly then." in page


@pytest.fixture
def cleared_target(sign_in, make_directory_user):
    """(helpdesk client, target user, clear URL) with a vacation reply set for the target."""
    target = make_directory_user(role="end user")
    helpdesk = sign_in("helpdesk")
    assert helpdesk.post(f"/out-of-office/helpdesk/{target.uid}/", GOOD).status_code == 302
    return helpdesk, target, f"/out-of-office/helpdesk/{target.uid}/clear/"


def test_clearing_asks_first_and_the_question_clears_nothing(cleared_target):
    helpdesk, target, clear_url = cleared_target
    assert f'action="{clear_url}"'.encode() in helpdesk.get(f"/out-of-office/helpdesk/{target.uid}/").content
    page = helpdesk.get(clear_url)
    assert page.status_code == 200
    assert b"Away in July" in page.content and b"Yes, clear it" in page.content
    assert b'name="confirm" value="yes"' in page.content
    assert VacationReply.objects.filter(uid=target.uid).exists()
    assert not AuditEvent.objects.filter(action="vacation.clear").exists()


def test_a_post_without_the_confirmation_clears_nothing(cleared_target):
    helpdesk, target, clear_url = cleared_target
    for data in ({}, {"confirm": "no"}, {"confirm": ""}):
        response = helpdesk.post(clear_url, data)
        assert response.status_code == 200 and b"Yes, clear it" in response.content
    assert VacationReply.objects.get(uid=target.uid).subject == "Away in July"
    assert not AuditEvent.objects.filter(action="vacation.clear").exists()


def test_the_confirmation_needs_the_csrf_token_of_the_confirmation_page(cleared_target):
    helpdesk, target, clear_url = cleared_target
    helpdesk.handler.enforce_csrf_checks = True
    assert helpdesk.post(clear_url, {"confirm": "yes"}).status_code == 403
    assert VacationReply.objects.filter(uid=target.uid).exists()
    page = helpdesk.get(clear_url).content.decode()
    token = page.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    response = helpdesk.post(clear_url, {"confirm": "yes", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert not VacationReply.objects.filter(uid=target.uid).exists()


def test_clearing_a_user_without_a_vacation_reply_says_so_and_changes_nothing(sign_in, make_directory_user):
    target = make_directory_user(role="end user")
    helpdesk = sign_in("helpdesk")
    response = helpdesk.post(f"/out-of-office/helpdesk/{target.uid}/clear/", {"confirm": "yes"}, follow=True)
    assert b"has no vacation reply to clear" in response.content
    assert not AuditEvent.objects.filter(action="vacation.clear").exists()


def test_admins_may_set_anyones_vacation_too(sign_in, make_directory_user):
    target = make_directory_user(role="end user")
    admin = sign_in("admin")
    assert admin.post(f"/out-of-office/helpdesk/{target.uid}/", GOOD).status_code == 302
    assert VacationReply.objects.filter(uid=target.uid, enabled=True).exists()


def test_end_users_cannot_use_the_helpdesk_pages(sign_in, make_directory_user):
    target = make_directory_user(role="end user")
    client = sign_in("end user")
    assert client.get("/out-of-office/helpdesk/").status_code == 403
    assert client.post(f"/out-of-office/helpdesk/{target.uid}/", GOOD).status_code == 403
    assert client.post(f"/out-of-office/helpdesk/{target.uid}/clear/").status_code == 403
    assert client.get(f"/out-of-office/helpdesk/{target.uid}/preview/").status_code == 403
    assert not VacationReply.objects.exists()


def test_helpdesk_gets_not_found_for_a_user_who_does_not_exist(sign_in):
    helpdesk = sign_in("helpdesk")
    assert helpdesk.get("/out-of-office/helpdesk/nobody-here/").status_code == 404
    assert helpdesk.post("/out-of-office/helpdesk/nobody-here/", GOOD).status_code == 404
    assert helpdesk.get("/out-of-office/helpdesk/", {"q": "*)(uid=*"}).status_code == 200


def test_the_nav_shows_vacation_links_by_role(sign_in):
    assert b"/out-of-office/vacation/" in sign_in("end user").get("/").content
    assert b"/out-of-office/helpdesk/" not in sign_in("end user").get("/").content
    assert b"/out-of-office/helpdesk/" in sign_in("helpdesk").get("/").content


def _active(client) -> None:
    client.post("/out-of-office/vacation/", {**GOOD, "starts_at": "", "ends_at": ""})


def test_the_preview_says_a_reply_would_go_out_and_shows_it(sign_in):
    client = sign_in("end user")
    _active(client)
    mailbox = client.directory_user.mail
    response = client.post(
        "/out-of-office/vacation/preview/",
        {"sender": "carol@remote.example", "headers": f"To: {mailbox}\nSubject: hello"},
    )
    assert b"A vacation reply would go out" in response.content
    assert b"I am away until 15 July." in response.content


@pytest.mark.parametrize(
    ("sender", "extra", "rule"),
    [
        ("", "", b"empty-sender"),
        ("MAILER-DAEMON@mx.remote.example", "", b"system-sender"),
        ("carol@remote.example", "List-Id: <x.remote.example>", b"mailing-list"),
        ("carol@remote.example", "Auto-Submitted: auto-generated", b"auto-submitted"),
        ("carol@remote.example", "Precedence: bulk", b"precedence"),
    ],
)
def test_the_preview_names_the_rule_that_stops_a_reply(sign_in, sender, extra, rule):
    client = sign_in("end user")
    _active(client)
    headers = f"To: {client.directory_user.mail}\n{extra}"
    response = client.post("/out-of-office/vacation/preview/", {"sender": sender, "headers": headers})
    assert b"No vacation reply" in response.content
    assert rule in response.content


def test_the_preview_without_a_vacation_says_none_is_set(sign_in):
    client = sign_in("end user")
    response = client.post("/out-of-office/vacation/preview/", {"sender": "carol@remote.example", "headers": ""})
    assert b"no-vacation" in response.content


def test_the_preview_refuses_a_sender_with_a_line_break(sign_in):
    client = sign_in("end user")
    response = client.post("/out-of-office/vacation/preview/", {"sender": "a@b.example\r\nX: y", "headers": ""})
    assert b'class="error"' in response.content


def test_helpdesk_previews_for_another_user(sign_in, make_directory_user):
    target = make_directory_user(role="end user")
    helpdesk = sign_in("helpdesk")
    helpdesk.post(f"/out-of-office/helpdesk/{target.uid}/", {**GOOD, "starts_at": "", "ends_at": ""})
    response = helpdesk.post(
        f"/out-of-office/helpdesk/{target.uid}/preview/",
        {"sender": "carol@remote.example", "headers": f"Cc: {target.mail}"},
    )
    assert b"A vacation reply would go out" in response.content


def test_the_reply_to_strangers_may_not_link_a_handover_note_but_the_one_for_colleagues_may(sign_in):
    client = sign_in("end user")
    link = "See https://mail.example.org/handover/12/ for who covers what."
    response = client.post("/out-of-office/vacation/", {**GOOD, "body": link})
    assert response.status_code == 200 and b"handover note" in response.content
    assert not VacationReply.objects.exists()
    assert client.post("/out-of-office/vacation/", {**GOOD, "internal_body": link}).status_code == 302
    assert VacationReply.objects.get(uid=client.directory_user.uid).internal_body == link


def test_start_and_end_are_read_in_the_browsers_time_zone_when_it_is_known(sign_in):
    client = sign_in("end user")
    client.cookies["tz"] = "Asia/Tokyo"
    assert b"Time zone Asia/Tokyo" in client.get("/out-of-office/vacation/").content
    client.post("/out-of-office/vacation/", GOOD)
    vacation = VacationReply.objects.get(uid=client.directory_user.uid)
    assert vacation.ends_at == datetime(2030, 7, 15, 18, 0, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert b'value="15 Jul 2030, 18:00"' in client.get("/out-of-office/vacation/").content


def test_the_helpdesk_list_costs_the_same_queries_for_many_vacations(sign_in, django_assert_num_queries):
    helpdesk = sign_in("helpdesk")
    helpdesk.get("/out-of-office/helpdesk/")  # warm the session and role caches
    VacationReply.objects.bulk_create(
        VacationReply(uid=f"user{n}", address=f"user{n}@example.org", enabled=True, subject="Away", body="Away.")
        for n in range(3)
    )
    # session, user (with its staff groups and whether it is suspended), the vacations away now
    # and away soon (no search: no query for its people's vacations)
    with django_assert_num_queries(4) as few:
        assert helpdesk.get("/out-of-office/helpdesk/").status_code == 200
    VacationReply.objects.bulk_create(
        VacationReply(uid=f"more{n}", address=f"more{n}@example.org", enabled=True, subject="Away", body="Away.")
        for n in range(40)
    )
    with django_assert_num_queries(len(few.captured_queries)):
        response = helpdesk.get("/out-of-office/helpdesk/")
    assert response.content.count(b"/out-of-office/helpdesk/more") == 40


def test_with_slapd_stopped_helpdesk_gets_a_clear_message_and_nothing_changes(sign_in, make_directory_user):
    target = make_directory_user(role="end user")
    helpdesk = sign_in("helpdesk")
    slapd = Slapd()
    slapd.stop()
    try:
        response = helpdesk.post(f"/out-of-office/helpdesk/{target.uid}/", GOOD, follow=True)
        search = helpdesk.get("/out-of-office/helpdesk/", {"q": target.uid})
    finally:
        slapd.start()
    assert b"The directory is not answering" in response.content
    assert b"The directory is not answering" in search.content
    assert not VacationReply.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="vacation").exists()
