"""The status every page shows for a vacation reply is what the responder does now."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from outofoffice.evaluation import evaluate
from outofoffice.models import VacationReply
from outofoffice.rules import parse_incoming

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)
# (enabled, start, end) relative to now, for each state.
STATES = {
    "scheduled": (True, 3 * DAY, 10 * DAY),
    "on": (True, -2 * DAY, 5 * DAY),
    "ended": (True, -20 * DAY, -10 * DAY),
    "off": (False, -2 * DAY, 5 * DAY),
}
BADGE = re.compile(r'<span class="vacation-status"><span class="badge[^"]*">(\w+)</span>')


def _shown_states(html: str) -> list[str]:
    return BADGE.findall(html)


def test_the_status_shown_everywhere_is_the_responders_decision_now(sign_in, make_directory_user):
    helpdesk = sign_in("helpdesk")
    admin = sign_in("admin")
    now = timezone.now()
    for state, (enabled, start, end) in STATES.items():
        owner = sign_in("end user")
        person = owner.directory_user
        VacationReply.objects.create(
            uid=person.uid,
            address=person.mail,
            enabled=enabled,
            starts_at=now + start,
            ends_at=now + end,
            subject="Away",
            body="I am away.",
        )
        incoming = parse_incoming("carol@remote.example", f"To: {person.mail}\nSubject: hi\n\n".encode())
        decision = evaluate(person.mail, incoming, timezone.now()).decision
        assert decision.reply == (state == "on"), (state, decision)

        pages = {
            "own vacation page": owner.get("/out-of-office/vacation/"),
            "own home page": owner.get("/"),
            "helpdesk user page": helpdesk.get(f"/out-of-office/helpdesk/{person.uid}/"),
            "helpdesk search": helpdesk.get("/out-of-office/helpdesk/", {"q": person.uid}),
            "helpdesk clear question": helpdesk.get(f"/out-of-office/helpdesk/{person.uid}/clear/"),
            "admin user page": admin.get(f"/directory/users/{person.uid}/"),
        }
        for page, response in pages.items():
            assert response.status_code == 200, page
            assert _shown_states(response.content.decode()) == [state], (state, page)

        helpdesk_page = pages["helpdesk user page"].content.decode()
        if state == "scheduled":
            assert "scheduled</span> from" in helpdesk_page
        away = helpdesk.get("/out-of-office/helpdesk/").content.decode()
        now_list, soon_list = away.split('id="away-now"')[1].split('id="away-soon"')
        assert (person.uid in now_list) == (state == "on"), state
        assert (person.uid in soon_list) == (state == "scheduled"), state


@pytest.mark.parametrize(
    ("enabled", "start", "end", "message"),
    [
        (True, 7 * DAY, 14 * DAY, "Vacation reply saved: scheduled from"),
        (True, -DAY, 14 * DAY, "Vacation reply saved: on until"),
        (True, -14 * DAY, -DAY, "Vacation reply saved: ended"),
        (False, None, None, "Vacation reply saved: off."),
    ],
)
def test_the_saved_message_says_what_the_reply_does_now(sign_in, enabled, start, end, message):
    client = sign_in("end user")
    now = timezone.localtime()
    data = {"subject": "Away", "body": "I am away.", "interval_days": 7}
    if enabled:
        data["enabled"] = "on"
    if start is not None:
        data["starts_at"] = (now + start).strftime("%Y-%m-%d %H:%M")
        data["ends_at"] = (now + end).strftime("%Y-%m-%d %H:%M")
    response = client.post("/out-of-office/vacation/", data, follow=True)
    assert message in response.content.decode()
    assert "it is on" not in response.content.decode()
