"""The user page for staff (actions grouped, destructive ones marked, the vacation reply edited
in place) and signing in with a mail address."""

import re
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from audit.models import AuditEvent
from outofoffice.models import VacationReply
from tests.conftest import DEMO_PASSWORD, pass_second_factor

pytestmark = pytest.mark.django_db


def test_helpdesk_sets_an_end_users_vacation_from_the_user_page_and_comes_back_to_it(
    sign_in: Any, make_directory_user: Any
) -> None:
    helpdesk = sign_in("helpdesk")
    person = make_directory_user()
    page_url = f"/directory/users/{person.uid}/"
    page = helpdesk.get(page_url).content.decode()
    assert f'action="/out-of-office/helpdesk/{person.uid}/"' in page and "Save the vacation reply" in page
    response = helpdesk.post(
        f"/out-of-office/helpdesk/{person.uid}/",
        {"next": page_url, "enabled": "on", "subject": "Away", "body": "Back on Monday.", "interval_days": "7"},
    )
    assert response.status_code == 302 and response["Location"] == page_url
    vacation = VacationReply.objects.get(uid=person.uid)
    assert vacation.enabled and vacation.body == "Back on Monday." and vacation.address == person.mail
    assert vacation.updated_by == helpdesk.directory_user.uid
    assert "“Away”" in helpdesk.get(page_url).content.decode()


def test_a_return_address_other_than_the_persons_page_is_refused(sign_in: Any, make_directory_user: Any) -> None:
    helpdesk = sign_in("helpdesk")
    person = make_directory_user()
    for elsewhere in ("https://evil.example/", "//evil.example/", "/directory/users/someoneelse/", "/"):
        response = helpdesk.post(
            f"/out-of-office/helpdesk/{person.uid}/",
            {"next": elsewhere, "subject": "x", "body": "y", "interval_days": "7"},
        )
        assert response.status_code == 200, elsewhere
        assert "sent from a page it cannot return to" in response.content.decode()
    assert not VacationReply.objects.filter(uid=person.uid).exists()
    # Without a return address the helpdesk page saves and stays where it is.
    response = helpdesk.post(
        f"/out-of-office/helpdesk/{person.uid}/", {"subject": "x", "body": "y", "interval_days": "7"}
    )
    assert response["Location"] == f"/out-of-office/helpdesk/{person.uid}/"


@pytest.mark.parametrize("target_role", ["helpdesk", "admin"])
def test_helpdesk_gets_no_vacation_editor_on_a_staff_members_page(
    sign_in: Any, make_directory_user: Any, target_role: str
) -> None:
    helpdesk = sign_in("helpdesk")
    staff = make_directory_user(role=target_role)
    page = helpdesk.get(f"/directory/users/{staff.uid}/").content.decode()
    assert "Save the vacation reply" not in page
    response = helpdesk.post(
        f"/out-of-office/helpdesk/{staff.uid}/",
        {"next": f"/directory/users/{staff.uid}/", "enabled": "on", "body": "x", "interval_days": "7"},
    )
    assert response.status_code == 403 and not VacationReply.objects.filter(uid=staff.uid).exists()


def test_the_admin_sees_actions_grouped_with_destructive_ones_marked(sign_in: Any, make_directory_user: Any) -> None:
    admin = sign_in("admin")
    person = make_directory_user()
    page = admin.get(f"/directory/users/{person.uid}/").content.decode()
    danger = page[page.index('class="action-group action-group-danger"') :]
    danger = danger[: danger.index("</section>")]
    assert re.search(r'class="button button-danger" href="/directory/users/[^/]+/suspend/"', danger)
    assert re.search(r'class="button button-danger" href="/directory/users/[^/]+/disable/"', danger)
    assert "/password/" not in danger and "/password/" in page  # resetting a password is no destructive act


def test_helpdesk_sees_no_admin_actions(sign_in: Any, make_directory_user: Any) -> None:
    helpdesk = sign_in("helpdesk")
    page = helpdesk.get(f"/directory/users/{make_directory_user().uid}/").content.decode()
    assert "action-group" not in page and "/suspend/" not in page


# --- signing in with a mail address ------------------------------------------------------------


def test_a_person_signs_in_with_their_mail_address_in_any_case(make_directory_user: Any) -> None:
    person = make_directory_user()
    client = Client()
    response = client.post("/accounts/sign-in/", {"username": person.mail.upper(), "password": DEMO_PASSWORD})
    assert response.status_code == 302
    assert client.get("/").wsgi_request.user.get_username() == person.uid
    assert AuditEvent.objects.filter(action="sign-in", target=person.uid).exists()


def test_staff_signing_in_with_a_mail_address_still_give_the_second_factor(make_directory_user: Any) -> None:
    admin = make_directory_user(role="admin")
    client = Client()
    response = client.post("/accounts/sign-in/", {"username": admin.mail, "password": DEMO_PASSWORD})
    assert response["Location"] == "/second-factor/verify/"
    pass_second_factor(client, admin.uid)
    assert client.get("/directory/").status_code == 200


def test_a_mail_address_that_two_entries_share_is_refused_clearly(make_directory_user: Any) -> None:
    shared = f"shared.box@{settings.MAIL_DOMAIN}"
    make_directory_user(mail=shared)
    make_directory_user(mail=shared)
    client = Client()
    response = client.post("/accounts/sign-in/", {"username": shared, "password": DEMO_PASSWORD})
    assert response.status_code == 200
    assert "Several accounts have this mail address. Sign in with your user name instead." in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_wrong_password_with_a_mail_address_counts_against_that_account(make_directory_user: Any) -> None:
    person = make_directory_user()
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        Client().post("/accounts/sign-in/", {"username": person.mail, "password": "wrong"}, REMOTE_ADDR="127.0.2.1")
    # The same account by its uid, from the same address: throttled as well.
    response = Client().post(
        "/accounts/sign-in/", {"username": person.uid, "password": DEMO_PASSWORD}, REMOTE_ADDR="127.0.2.1"
    )
    assert "Too many failed sign-ins" in response.content.decode()


def test_an_address_nobody_has_is_refused_like_a_wrong_password() -> None:
    response = Client().post("/accounts/sign-in/", {"username": "nobody@example.org", "password": DEMO_PASSWORD})
    assert response.status_code == 200 and "do not match" in response.content.decode()


def test_the_sign_in_page_shows_whom_to_ask_from_the_setting(client: Client, settings: Any) -> None:
    settings.SIGN_IN_HELP = "Forgot your password? Call the IT desk on 1234 <b>now</b>."
    page = client.get("/accounts/sign-in/").content.decode()
    assert "Forgot your password? Call the IT desk on 1234 &lt;b&gt;now&lt;/b&gt;." in page
