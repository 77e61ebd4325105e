"""Who may act on whom: helpdesk on end users only, admins on anyone but themselves where a
self-action makes no sense; and the smaller defects found trying the staff pages as an attacker."""

import pytest
from django.db import OperationalError
from django.utils import timezone

from accounts import directory, suspension
from accounts.models import SenderSuspension
from outofoffice.models import ReplyLog, VacationReply

pytestmark = pytest.mark.django_db

VACATION = {
    "enabled": "on",
    "starts_at": "",
    "ends_at": "",
    "subject": "Away",
    "body": "I am away.",
    "internal_body": "",
    "delegate": "",
    "interval_days": "7",
}


@pytest.mark.parametrize("target_role", ["admin", "helpdesk"])
def test_helpdesk_cannot_set_or_clear_the_vacation_of_staff(sign_in, make_directory_user, target_role):
    target = make_directory_user(role=target_role)
    helpdesk = sign_in("helpdesk")
    for url in (f"/out-of-office/helpdesk/{target.uid}/", f"/out-of-office/helpdesk/{target.uid}/clear/"):
        assert helpdesk.get(url).status_code == 403
    response = helpdesk.post(f"/out-of-office/helpdesk/{target.uid}/", VACATION)
    assert response.status_code == 403
    assert b"only an admin" in response.content
    preview = helpdesk.post(f"/out-of-office/helpdesk/{target.uid}/preview/", {"sender": "", "headers": ""})
    assert preview.status_code == 403
    assert not VacationReply.objects.filter(uid=target.uid).exists()


def test_helpdesk_still_sets_an_end_users_vacation_and_admins_anyones(sign_in, make_directory_user):
    end_user = make_directory_user()
    helpdesk_person = make_directory_user(role="helpdesk")
    assert sign_in("helpdesk").post(f"/out-of-office/helpdesk/{end_user.uid}/", VACATION).status_code == 302
    admin = sign_in("admin")
    assert admin.post(f"/out-of-office/helpdesk/{helpdesk_person.uid}/", VACATION).status_code == 302
    assert VacationReply.objects.filter(uid__in=[end_user.uid, helpdesk_person.uid], enabled=True).count() == 2


def test_a_staff_preview_for_someone_else_does_not_reveal_who_has_written_to_them(sign_in, make_directory_user):
    target = make_directory_user()
    helpdesk = sign_in("helpdesk")
    helpdesk.post(f"/out-of-office/helpdesk/{target.uid}/", VACATION)
    vacation = VacationReply.objects.get(uid=target.uid)
    ReplyLog.objects.create(
        vacation=vacation, sender="carol@remote.example", reply_key=vacation.reply_key, sent_at=timezone.now()
    )
    form = {"sender": "carol@remote.example", "headers": f"To: {target.mail}"}
    response = helpdesk.post(f"/out-of-office/helpdesk/{target.uid}/preview/", form)
    assert b"already-answered" not in response.content
    assert b"A vacation reply would go out" in response.content


def test_the_owner_of_the_reply_still_sees_the_interval_rule_in_their_own_preview(sign_in):
    client = sign_in("end user")
    client.post("/out-of-office/vacation/", VACATION)
    vacation = VacationReply.objects.get(uid=client.directory_user.uid)
    ReplyLog.objects.create(
        vacation=vacation, sender="carol@remote.example", reply_key=vacation.reply_key, sent_at=timezone.now()
    )
    form = {"sender": "carol@remote.example", "headers": f"To: {client.directory_user.mail}"}
    assert b"already-answered" in client.post("/out-of-office/vacation/preview/", form).content


@pytest.mark.parametrize("page", ["suspend", "disable", "password"])
def test_an_admin_opening_their_own_account_action_page_is_refused_without_an_error(sign_in, page):
    admin = sign_in("admin")
    uid = admin.directory_user.uid
    for response in (admin.get(f"/directory/users/{uid}/{page}/"), admin.post(f"/directory/users/{uid}/{page}/", {})):
        assert response.status_code == 403
        assert b"Nothing was changed" in response.content
    assert directory.has_password(uid)
    assert not SenderSuspension.objects.filter(uid=uid).exists()


def test_an_admin_cannot_reinstate_themselves(sign_in, make_directory_user):
    admin = sign_in("admin")
    uid = admin.directory_user.uid
    assert admin.post(f"/directory/users/{uid}/reinstate/").status_code == 403


def test_the_detail_page_offers_only_the_actions_the_viewer_may_take(sign_in, make_directory_user):
    target = make_directory_user()
    admin = sign_in("admin")
    other = admin.get(f"/directory/users/{target.uid}/").content.decode()
    own = admin.get(f"/directory/users/{admin.directory_user.uid}/").content.decode()
    assert "Suspend sender" in other and "Disable account" in other
    assert "Suspend sender" not in own and "Disable account" not in own


def test_a_suspension_while_the_database_is_busy_answers_503_and_changes_nothing(
    sign_in, make_directory_user, monkeypatch
):
    target = make_directory_user()
    admin = sign_in("admin")

    def busy(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(SenderSuspension.objects, "create", busy)
    response = admin.post(f"/directory/users/{target.uid}/suspend/", {"reason": "spam", "until": ""})
    assert response.status_code == 503
    assert b"database is busy" in response.content
    assert not directory.get_user(target.uid).sender_blocked
    assert not suspension.is_suspended(target.uid)


@pytest.mark.parametrize(
    "url",
    [
        "/out-of-office/helpdesk/{uid}%0A/",
        "/out-of-office/helpdesk/{uid}%0A/clear/",
        "/directory/users/{uid}%0A/",
    ],
)
def test_a_uid_with_a_trailing_newline_names_nobody(sign_in, make_directory_user, url):
    target = make_directory_user()
    admin = sign_in("admin")
    assert admin.get(url.format(uid=target.uid)).status_code == 404


def test_a_uid_with_a_trailing_newline_is_no_uid_for_the_directory(make_directory_user):
    target = make_directory_user()
    assert directory.get_user(target.uid + "\n") is None


def test_helpdesk_search_pages_stop_where_the_directorys_do(sign_in, make_directory_user):
    make_directory_user()
    helpdesk = sign_in("helpdesk")
    response = helpdesk.get("/out-of-office/helpdesk/", {"q": "test", "page": "1000"})
    assert response.status_code == 200
    assert response.context["page"] == 39
