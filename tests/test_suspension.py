import json
from datetime import timedelta
from io import StringIO

import ldap3
import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts import directory, suspension, tasks
from accounts.models import SenderSuspension
from aliases.models import Alias, Domain
from audit.models import AuditEvent
from localservices.slapd import Slapd
from postfix.publication import render_tables

pytestmark = pytest.mark.django_db
HOSTILE_REASON = "Spam run\r\n<script>alert('x')</script>\n*)(uid=*)(|(mail=*\\ 554 5.7.1 Bcc: all@example.org"


def _suspend(client, uid: str, reason: str = "Phishing from this account", until: str = ""):
    return client.post(f"/directory/users/{uid}/suspend/", {"reason": reason, "until": until})


def _flag(uid: str) -> bool:
    person = directory.get_user(uid)
    assert person is not None
    return person.sender_blocked


def test_admin_suspends_a_user_with_a_reason_and_it_is_recorded(sign_in, make_directory_user) -> None:
    target = make_directory_user()
    admin = sign_in("admin")
    response = _suspend(admin, target.uid)
    assert response.status_code == 302
    assert _flag(target.uid) is True
    row = SenderSuspension.objects.get(uid=target.uid)
    assert (row.reason, row.mail, row.created_by_name, row.until, row.lifted_at) == (
        "Phishing from this account",
        target.mail,
        admin.directory_user.uid,
        None,
        None,
    )
    assert suspension.is_suspended(target.uid)
    event = AuditEvent.objects.get(action="suspension.suspend")
    assert (event.actor_name, event.target) == (admin.directory_user.uid, target.uid)
    page = admin.get("/directory/", {"q": target.uid}).content.decode()
    assert "suspended" in page


def test_reinstating_clears_the_flag_and_keeps_the_history(sign_in, make_directory_user) -> None:
    target = make_directory_user()
    admin = sign_in("admin")
    _suspend(admin, target.uid)
    response = admin.post(f"/directory/users/{target.uid}/reinstate/")
    assert response.status_code == 302
    assert _flag(target.uid) is False
    assert not suspension.is_suspended(target.uid)
    row = SenderSuspension.objects.get(uid=target.uid)
    assert row.lifted_at is not None and row.lifted_by_name == admin.directory_user.uid
    assert AuditEvent.objects.filter(action="suspension.reinstate", target=target.uid).count() == 1
    page = admin.get(f"/directory/users/{target.uid}/").content.decode()
    assert "Not suspended" in page and "Phishing from this account" in page  # history


def test_a_reason_with_newlines_html_and_ldap_metacharacters_is_stored_and_shown_safely(
    sign_in, make_directory_user
) -> None:
    target = make_directory_user()
    admin = sign_in("admin")
    assert _suspend(admin, target.uid, HOSTILE_REASON).status_code == 302
    stored = SenderSuspension.objects.get(uid=target.uid).reason
    assert stored == HOSTILE_REASON.replace("\r\n", "\n")
    page = admin.get(f"/directory/users/{target.uid}/").content.decode()
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "*)(uid=*)(|(mail=*" in page
    # The sender_access entries carry the configured text only.
    for _address, action in suspension.sender_access_entries():
        assert action == f"REJECT {settings.SUSPENSION_REJECT_TEXT}"
    assert _flag(target.uid) is True


@pytest.mark.parametrize(
    "reason,message",
    [("", "required"), ("   \n ", "required"), ("nul\x00byte", "Null characters"), ("bell\x07", "Control")],
)
def test_a_missing_or_hostile_reason_changes_nothing(sign_in, make_directory_user, reason, message) -> None:
    target = make_directory_user()
    admin = sign_in("admin")
    response = _suspend(admin, target.uid, reason)
    assert response.status_code == 200 and message in response.content.decode()
    assert _flag(target.uid) is False
    assert not SenderSuspension.objects.exists() and not AuditEvent.objects.filter(action__startswith="susp").exists()


def test_an_end_in_the_past_is_refused(sign_in, make_directory_user) -> None:
    target = make_directory_user()
    admin = sign_in("admin")
    past = (timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    response = _suspend(admin, target.uid, until=past)
    assert "must be in the future" in response.content.decode()
    assert _flag(target.uid) is False


def test_an_admin_cannot_suspend_their_own_account(sign_in) -> None:
    admin = sign_in("admin")
    response = _suspend(admin, admin.directory_user.uid)
    assert "cannot suspend your own account" in response.content.decode()
    assert _flag(admin.directory_user.uid) is False
    assert not SenderSuspension.objects.exists()


def test_helpdesk_sees_the_suspension_but_cannot_lift_it(sign_in, make_directory_user) -> None:
    target = make_directory_user()
    _suspend(sign_in("admin"), target.uid)
    helpdesk = sign_in("helpdesk")
    page = helpdesk.get(f"/directory/users/{target.uid}/").content.decode()
    assert "sending suspended" in page and "Phishing from this account" in page
    assert "Reinstate" not in page
    assert helpdesk.post(f"/directory/users/{target.uid}/reinstate/").status_code == 403
    assert suspension.is_suspended(target.uid) and _flag(target.uid)


def test_a_suspended_user_sees_why_and_whom_to_contact_and_can_still_read_settings(sign_in) -> None:
    user = sign_in()
    _suspend(sign_in("admin"), user.directory_user.uid, "Your account sent <b>spam</b>\nCall us.")
    home = user.get("/").content.decode()
    assert "Your account may not send mail" in home
    assert "Your account sent &lt;b&gt;spam&lt;/b&gt;<br>Call us." in home
    assert settings.ABUSE_CONTACT in home
    assert user.get("/accounts/password/").status_code == 200
    assert "may not send mail" not in sign_in().get("/").content.decode()  # others see nothing


def test_the_banner_follows_the_suspension_from_one_request_to_the_next(sign_in) -> None:
    # Whether someone is suspended comes with the signed-in user of each request: nothing kept.
    user, admin = sign_in(), sign_in("admin")
    assert "may not send mail" not in user.get("/aliases/").content.decode()
    _suspend(admin, user.directory_user.uid)
    assert "may not send mail" in user.get("/aliases/").content.decode()
    assert admin.post(f"/directory/users/{user.directory_user.uid}/reinstate/").status_code == 302
    assert "may not send mail" not in user.get("/aliases/").content.decode()


def test_sender_access_entries_cover_the_mailbox_and_every_alias_of_suspended_users_only(
    sign_in, make_directory_user
) -> None:
    suspended_client, other_client = sign_in(), sign_in()
    suspended, other = suspended_client.directory_user, other_client.directory_user
    domain = Domain.objects.get_or_create(name=settings.ALIAS_DOMAIN, defaults={"is_alias_domain": True})[0]
    Alias.objects.create(owner=User.objects.get(username=suspended.uid), local_part="shop1", domain=domain)
    Alias.objects.create(owner=User.objects.get(username=suspended.uid), local_part="old", domain=domain, enabled=False)
    Alias.objects.create(owner=User.objects.get(username=other.uid), local_part="fine", domain=domain)
    _suspend(sign_in("admin"), suspended.uid)
    action = f"REJECT {settings.SUSPENSION_REJECT_TEXT}"
    expected = [(suspended.mail, action), (f"shop1@{domain.name}", action), (f"old@{domain.name}", action)]
    assert render_tables()["sender_access"] == sorted(f"{address} {value}" for address, value in expected)


def test_a_mailbox_renamed_after_the_suspension_is_refused_under_its_new_address(sign_in, make_directory_user) -> None:
    # The suspension records the address the user had then; the directory may change it later
    # (a postmaster edits `mail` in LDAP). The published table refuses both.
    target = make_directory_user()
    assert _suspend(sign_in("admin"), target.uid).status_code == 302
    renamed = f"renamed{target.uid}@{settings.MAIL_DOMAIN}"
    with directory.connection() as conn:
        conn.modify(directory.user_dn(target.uid), {"mail": [(ldap3.MODIFY_REPLACE, [renamed])]})
    lines = render_tables()["sender_access"]
    action = f"REJECT {settings.SUSPENSION_REJECT_TEXT}"
    assert f"{renamed} {action}" in lines
    assert f"{target.mail} {action}" in lines


def test_an_end_date_one_minute_ahead_lifts_by_itself(sign_in, make_directory_user, monkeypatch) -> None:
    target = make_directory_user()
    admin = sign_in("admin")
    until = timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=2)
    assert _suspend(admin, target.uid, until=until.strftime("%Y-%m-%dT%H:%M")).status_code == 302
    row = SenderSuspension.objects.get(uid=target.uid)
    assert row.until == until
    tasks.sweep_suspensions()  # before the end: nothing happens
    assert suspension.is_suspended(target.uid) and _flag(target.uid)

    later = until + timedelta(seconds=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    tasks.sweep_suspensions()
    row.refresh_from_db()
    assert row.lifted_at == later and row.lifted_by is None and row.lifted_by_name == ""
    assert _flag(target.uid) is False
    event = AuditEvent.objects.get(action="suspension.expire")
    assert (event.target, event.actor, event.actor_name) == (target.uid, None, "")
    tasks.lift_suspension(row.pk)  # the ETA task arriving afterwards changes nothing
    assert AuditEvent.objects.filter(action="suspension.expire").count() == 1


def test_the_eta_task_lifts_the_suspension_at_its_end(sign_in, make_directory_user, monkeypatch) -> None:
    target = make_directory_user()
    until = timezone.now() + timedelta(minutes=1)
    admin_user = User.objects.get(username=sign_in("admin").directory_user.uid)
    row = suspension.suspend(target.uid, "short", until, admin_user)
    monkeypatch.setattr(timezone, "now", lambda: until + timedelta(seconds=1))
    tasks.lift_suspension(row.pk)
    assert not suspension.is_suspended(target.uid) and _flag(target.uid) is False


def test_a_suspension_with_an_end_queues_the_task_that_lifts_it_at_that_end(
    sign_in, make_directory_user, django_capture_on_commit_callbacks
) -> None:
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("celery")
    target = make_directory_user()
    until = (timezone.now() + timedelta(hours=2)).replace(microsecond=0)
    admin_user = User.objects.get(username=sign_in("admin").directory_user.uid)
    with django_capture_on_commit_callbacks(execute=True):
        row = suspension.suspend(target.uid, "short", until, admin_user)
    messages = [json.loads(raw) for raw in broker.lrange("celery", 0, -1)]
    broker.delete("celery")
    assert [(m["headers"]["task"], m["headers"]["eta"]) for m in messages] == [
        (tasks.lift_suspension.name, until.isoformat())
    ]
    assert messages[0]["headers"]["argsrepr"] == repr([row.pk])


def test_with_slapd_stopped_suspending_fails_clearly_and_records_nothing(sign_in, make_directory_user) -> None:
    target = make_directory_user()
    admin = sign_in("admin")
    admin_user = User.objects.get(username=admin.directory_user.uid)
    slapd = Slapd()
    slapd.stop()
    try:
        response = _suspend(admin, target.uid)
        with pytest.raises(suspension.SuspensionError, match="not answering.*not suspended"):
            suspension.suspend(target.uid, "reason", None, admin_user)
    finally:
        slapd.start()
    assert response.status_code == 503
    assert "directory is not answering" in response.content.decode()
    assert not SenderSuspension.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="suspension").exists()
    assert _flag(target.uid) is False


def test_with_slapd_stopped_reinstating_fails_clearly_and_the_user_stays_suspended(
    sign_in, make_directory_user
) -> None:
    target = make_directory_user()
    admin = sign_in("admin")
    _suspend(admin, target.uid)
    slapd = Slapd()
    slapd.stop()
    try:
        response = admin.post(f"/directory/users/{target.uid}/reinstate/", follow=True)
        tasks.sweep_suspensions()  # the sweep survives the outage too
    finally:
        slapd.start()
    assert "still suspended" in response.content.decode()
    assert suspension.is_suspended(target.uid) and _flag(target.uid) is True


def test_a_database_failure_after_the_ldap_write_puts_the_flag_back(sign_in, make_directory_user, monkeypatch) -> None:
    target = make_directory_user()
    admin_user = User.objects.get(username=sign_in("admin").directory_user.uid)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(suspension, "record_event", broken)
    with pytest.raises(RuntimeError):
        suspension.suspend(target.uid, "reason", None, admin_user)
    assert _flag(target.uid) is False and not SenderSuspension.objects.exists()


def test_the_sweep_reapplies_the_database_to_ldap(sign_in, make_directory_user) -> None:
    suspended, stray = make_directory_user(), make_directory_user()
    admin_user = User.objects.get(username=sign_in("admin").directory_user.uid)
    suspension.suspend(suspended.uid, "reason", None, admin_user)
    directory.set_sender_blocked(suspended.uid, False)  # e.g. restored from an old backup
    directory.set_sender_blocked(stray.uid, True)  # set by hand, no record
    tasks.sweep_suspensions()
    assert _flag(suspended.uid) is True
    assert _flag(stray.uid) is False


def test_the_command_line_suspends_and_reinstates_through_the_same_checks(sign_in, make_directory_user) -> None:
    target = make_directory_user()
    admin = make_directory_user(role="admin")
    with pytest.raises(CommandError, match="not an admin"):
        call_command("sender_suspension", "suspend", target.uid, "--as", target.uid, "--reason", "x")
    with pytest.raises(CommandError, match="Null characters"):
        call_command("sender_suspension", "suspend", target.uid, "--as", admin.uid, "--reason", "a\x00b")
    assert _flag(target.uid) is False
    out = StringIO()
    call_command("sender_suspension", "suspend", target.uid, "--as", admin.uid, "--reason", "abuse desk", stdout=out)
    assert _flag(target.uid) is True
    call_command("sender_suspension", "list", stdout=out)
    assert f"{target.uid}\t{target.mail}\tuntil reinstated\tby {admin.uid}" in out.getvalue()
    call_command("sender_suspension", "reinstate", target.uid, "--as", admin.uid, stdout=out)
    assert _flag(target.uid) is False
    event = AuditEvent.objects.get(action="suspension.suspend")
    assert event.actor_name == admin.uid
