"""Second factor: TOTP codes (replay, tolerance, throttle), recovery codes, the policy for
roles that must have one (over every URL), roles changing under a session, fresh factors for
actions on others, and an admin's reset. Browser ceremonies: tests/browser/test_second_factor.py."""

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import reverse

from accounts import assurance, directory
from accounts.models import SenderSuspension
from aliases import publication
from audit.models import AuditEvent
from mfa import pending, sealing, services, totp
from mfa.models import Passkey, RecoveryCode, ResetNotice, TotpDevice
from tests.conftest import DEMO_PASSWORD, give_second_factor, sign_in_client
from tests.test_authorization_matrix import DELEGATE, MATRIX, OTHER, OWNER, TOPIC, _arguments, _objects, url_patterns
from tests.test_postfix_e2e import maildir

pytestmark = pytest.mark.django_db

VERIFY = reverse("mfa:verify")


def password(client: Client, uid: str) -> str:
    """Sign in with the password only; where the browser is sent next."""
    response = client.post(reverse("accounts:login"), {"username": uid, "password": DEMO_PASSWORD})
    assert response.status_code == 302, response.content.decode()[:1000]
    return response["Location"]


def code(client: Client, value: str) -> object:
    return client.post(VERIFY, {"code": value})


def wrong_code(secret: str) -> str:
    now = totp.step_at()
    valid = {totp.code_for(secret, step) for step in range(now - 2, now + 3)}
    return next(c for c in (f"{n:06d}" for n in range(1000, 2000)) if c not in valid)


@pytest.fixture
def admin_with_app(make_directory_user: Callable[..., directory.DirectoryUser]) -> tuple[str, str]:
    """An admin who has an authenticator app: (uid, secret)."""
    person = make_directory_user(role="admin")
    assert password(Client(), person.uid) == VERIFY  # makes the user row; the policy holds them
    return person.uid, give_second_factor(person.uid)


def signed_in(client: Client) -> bool:
    return client.get(reverse("home")).status_code == 200


# --- TOTP -------------------------------------------------------------------------------------


def test_a_right_code_signs_in_and_the_session_records_how_and_when(admin_with_app) -> None:
    uid, secret = admin_with_app
    client = Client()
    assert password(client, uid) == VERIFY
    assert not signed_in(client)
    before = time.time()

    response = code(client, totp.code_for(secret, totp.step_at()))

    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in(client)
    record = client.session[assurance.SESSION_KEY]
    assert record["method"] == "totp" and before <= record["at"] <= time.time()
    assert AuditEvent.objects.filter(action="sign-in.second-factor", target=uid, detail="totp").exists()


def test_a_replayed_code_is_refused(admin_with_app) -> None:
    uid, secret = admin_with_app
    used = totp.code_for(secret, totp.step_at())
    first = Client()
    password(first, uid)
    assert code(first, used).status_code == 302

    second = Client()
    password(second, uid)
    response = code(second, used)

    assert response.status_code == 200
    assert "used already" in response.content.decode()
    assert not signed_in(second)


def test_a_code_of_the_step_before_is_accepted_but_not_one_three_steps_old(admin_with_app) -> None:
    uid, secret = admin_with_app
    client = Client()
    password(client, uid)
    now = totp.step_at()

    assert code(client, totp.code_for(secret, now - 3)).status_code == 200
    assert code(client, totp.code_for(secret, now - 2)).status_code == 200
    assert not signed_in(client)
    assert code(client, totp.code_for(secret, now - 1)).status_code == 302
    assert signed_in(client)


def test_once_a_code_is_used_an_older_one_is_refused_too(admin_with_app) -> None:
    uid, secret = admin_with_app
    now = totp.step_at()
    first = Client()
    password(first, uid)
    assert code(first, totp.code_for(secret, now)).status_code == 302
    second = Client()
    password(second, uid)
    assert code(second, totp.code_for(secret, now - 1)).status_code == 200


def test_the_eleventh_wrong_code_is_refused_and_then_even_the_right_one(admin_with_app) -> None:
    uid, secret = admin_with_app
    client = Client()
    password(client, uid)
    bad = wrong_code(secret)
    for _ in range(settings.SECOND_FACTOR_FAILURE_LIMIT):
        response = code(client, bad)
        assert "not right" in response.content.decode()

    eleventh = code(client, bad)
    right = code(client, totp.code_for(secret, totp.step_at()))

    assert "Too many wrong codes" in eleventh.content.decode()
    assert right.status_code == 200 and "Too many wrong codes" in right.content.decode()
    assert not signed_in(client)
    # The throttle is the account's, not the browser's: another client is refused as well.
    other = Client()
    password(other, uid)
    assert "Too many wrong codes" in code(other, totp.code_for(secret, totp.step_at())).content.decode()
    assert AuditEvent.objects.filter(action="second-factor.refused", target=uid, detail="throttled").count() == 3


def test_the_throttle_window_passes_and_the_owner_gets_in(admin_with_app) -> None:
    uid, secret = admin_with_app
    client = Client()
    password(client, uid)
    bad = wrong_code(secret)
    with override_settings(SECOND_FACTOR_FAILURE_WINDOW=1):
        for _ in range(settings.SECOND_FACTOR_FAILURE_LIMIT + 1):
            code(client, bad)
        time.sleep(1.1)
        assert code(client, totp.code_for(secret, totp.step_at())).status_code == 302


def test_the_totp_secret_is_sealed_at_rest_and_a_fallback_key_still_opens_it(admin_with_app) -> None:
    uid, secret = admin_with_app
    device = TotpDevice.objects.get(user__username=uid)
    assert secret not in device.sealed_secret
    with override_settings(SECRET_KEY="a-new-key-for-this-test", SECRET_KEY_FALLBACKS=[settings.SECRET_KEY]):
        client = Client()
        password(client, uid)
        assert code(client, totp.code_for(secret, totp.step_at())).status_code == 302
        device.refresh_from_db()
        # Re-sealed under the current key by the successful code.
        assert sealing.sealed_under_current_key(device.sealed_secret)


# --- enrolment ---------------------------------------------------------------------------------


def enrol_app(client: Client) -> tuple[str, object]:
    """Through the enrolment page: scan (read the secret from the page), confirm with a code."""
    page = client.get(reverse("mfa:totp_add"))
    assert page.status_code == 200
    secret = page.context["secret"].replace(" ", "")
    assert "<svg" in page.content.decode() and "otpauth" not in page.content.decode().split("<svg", 1)[0]
    response = client.post(reverse("mfa:totp_add"), {"code": totp.code_for(secret, totp.step_at())})
    return secret, response


def test_an_admin_without_a_factor_is_taken_to_enrolment_and_signed_in_once_done(make_directory_user) -> None:
    person = make_directory_user(role="admin")
    client = Client()
    assert password(client, person.uid) == VERIFY
    assert client.get(VERIFY)["Location"] == reverse("mfa:enrol")
    assert client.get(reverse("mfa:enrol")).status_code == 200

    step = totp.step_at()
    secret, done = enrol_app(client)

    assert done.status_code == 200
    codes = done.context["codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert RecoveryCode.objects.filter(user__username=person.uid, used_at__isnull=True).count() == 10
    assert signed_in(client)
    # The code that confirmed the app cannot be used again to sign in.
    other = Client()
    password(other, person.uid)
    assert code(other, totp.code_for(secret, step)).status_code == 200
    assert not signed_in(other)


def test_a_wrong_first_code_keeps_nothing(make_directory_user) -> None:
    person = make_directory_user(role="admin")
    client = Client()
    password(client, person.uid)
    client.get(reverse("mfa:totp_add"))
    response = client.post(reverse("mfa:totp_add"), {"code": "12345x"})
    assert response.status_code == 200
    assert not TotpDevice.objects.filter(user__username=person.uid).exists()
    assert not signed_in(client)


def test_an_end_user_needs_no_factor_but_may_opt_in_and_is_then_asked_for_it(make_directory_user) -> None:
    person = make_directory_user()
    client = Client()
    assert password(client, person.uid) == "/"
    assert signed_in(client)

    secret, done = enrol_app(client)
    assert done.status_code == 200 and len(done.context["codes"]) == 10

    again = Client()
    assert password(again, person.uid) == VERIFY
    assert not signed_in(again)
    assert code(again, done.context["codes"][0]).status_code == 302
    assert signed_in(again)


# --- the policy, over every URL --------------------------------------------------------------------


TOKEN_ONLY_APIS = ("api", "simplelogin", "addy")  # the alias API (api/): tokens only
OPEN_WHILE_PENDING = {"accounts:login", "accounts:logout", "mfa:verify", "mfa:enrol", "mfa:totp_add", "mfa:passkey_add"}


def test_an_admin_without_a_factor_reaches_no_other_page_until_enrolled(make_directory_user) -> None:
    admin = make_directory_user(role="admin")
    people = {role: make_directory_user() for role in (OWNER, OTHER, DELEGATE, TOPIC)}
    for person in people.values():
        sign_in_client(Client(), person.uid)  # their user rows
    objects = _objects(people)
    client = Client()
    password(client, admin.uid)
    patterns = dict(url_patterns())
    assert set(MATRIX) == set(patterns)

    for name, pattern in sorted(patterns.items()):
        if name in OPEN_WHILE_PENDING:
            continue
        url = reverse(name, kwargs=_arguments(name, pattern, objects))
        for method in ("get", "post"):
            response = getattr(client, method)(url, {})
            if name.split(":")[0] in TOKEN_ONLY_APIS:
                # No session counts there at all: the pending visitor is as anonymous as anyone.
                assert response.status_code in (401, 404, 405) or name == "api:openapi-json", (name, method)
                continue
            assert response.status_code == 302 and response["Location"] == VERIFY, (name, method)

    # Enrolled, the same admin gets in.
    enrol_app(client)
    assert signed_in(client)
    assert client.get(reverse("audit:log")).status_code == 200


def test_the_pending_sign_in_expires(admin_with_app, monkeypatch) -> None:
    uid, secret = admin_with_app
    client = Client()
    password(client, uid)
    monkeypatch.setattr(pending, "PENDING_SECONDS", 0)
    time.sleep(0.01)
    response = code(client, totp.code_for(secret, totp.step_at()))
    assert response.status_code == 302 and response["Location"] == reverse("accounts:login")
    assert not signed_in(client)


def test_a_password_changed_in_ldap_while_pending_signs_nobody_in(admin_with_app) -> None:
    uid, secret = admin_with_app
    client = Client()
    password(client, uid)
    directory.set_password(uid, "another password entirely 123")
    response = code(client, totp.code_for(secret, totp.step_at()))
    assert response["Location"] == reverse("accounts:login")
    assert not signed_in(client)


@override_settings(SESSION_RECHECK_SECONDS=0)
def test_an_end_user_promoted_to_admin_in_ldap_must_then_enrol(make_directory_user) -> None:
    person = make_directory_user()
    client = Client()
    password(client, person.uid)
    assert signed_in(client)

    directory.add_to_group(person.uid, settings.LDAP_ADMIN_GROUP_DN)
    response = client.get(reverse("aliases:list"))

    assert response.status_code == 302 and response["Location"] == VERIFY
    assert client.get(reverse("audit:log"))["Location"] == VERIFY
    assert client.get(VERIFY)["Location"] == reverse("mfa:enrol")
    enrol_app(client)
    assert client.get(reverse("audit:log")).status_code == 200


@override_settings(SECOND_FACTOR_ROLES=frozenset({"admin"}))
def test_the_roles_that_need_a_factor_come_from_the_setting(make_directory_user) -> None:
    helpdesk = make_directory_user(role="helpdesk")
    admin = make_directory_user(role="admin")
    assert password(Client(), helpdesk.uid) == "/"
    assert password(Client(), admin.uid) == VERIFY


# --- recovery codes --------------------------------------------------------------------------------


def test_a_recovery_code_works_once(admin_with_app) -> None:
    uid, _ = admin_with_app
    codes = services.new_recovery_codes(None, User.objects.get(username=uid))
    first = Client()
    password(first, uid)
    response = code(first, codes[3].upper().replace("-", " "))
    assert response.status_code == 302 and signed_in(first)
    assert first.session[assurance.SESSION_KEY]["method"] == "recovery code"

    second = Client()
    password(second, uid)
    assert "not right, or was used already" in code(second, codes[3]).content.decode()
    assert code(second, codes[4]).status_code == 302


def test_new_recovery_codes_kill_the_old_ones(admin_with_app) -> None:
    uid, secret = admin_with_app
    user = User.objects.get(username=uid)
    old = services.new_recovery_codes(None, user)
    client = Client()
    password(client, uid)
    code(client, totp.code_for(secret, totp.step_at()))

    response = client.post(reverse("mfa:recovery_codes"))
    new = response.context["codes"]

    assert len(new) == 10 and not set(new) & set(old)
    probe = Client()
    password(probe, uid)
    assert code(probe, old[0]).status_code == 200
    assert code(probe, new[0]).status_code == 302
    stored = set(RecoveryCode.objects.filter(user=user).values_list("digest", flat=True))
    assert not any(c.replace("-", "") in d for c in new for d in stored)


def test_recovery_codes_alone_are_no_factor(make_directory_user) -> None:
    person = make_directory_user()
    client = Client()
    password(client, person.uid)
    codes = services.new_recovery_codes(None, User.objects.get(username=person.uid))
    other = Client()
    assert password(other, person.uid) == "/"  # no factor: not asked
    assert codes


# --- removing one's own ----------------------------------------------------------------------------


def test_an_admin_cannot_remove_the_last_factor_but_an_end_user_can(admin_with_app, make_directory_user) -> None:
    uid, secret = admin_with_app
    client = Client()
    password(client, uid)
    code(client, totp.code_for(secret, totp.step_at()))
    client.post(reverse("mfa:totp_remove"))
    assert TotpDevice.objects.filter(user__username=uid).exists()

    person = make_directory_user()
    own = Client()
    password(own, person.uid)
    enrol_app(own)
    own.post(reverse("mfa:totp_remove"))
    assert not TotpDevice.objects.filter(user__username=person.uid).exists()
    assert not RecoveryCode.objects.filter(user__username=person.uid).exists()
    assert password(Client(), person.uid) == "/"


def test_a_pending_visitor_cannot_add_a_factor_to_skip_the_one_they_have(admin_with_app) -> None:
    uid, _ = admin_with_app
    client = Client()
    password(client, uid)
    assert client.get(reverse("mfa:passkey_add"))["Location"] == VERIFY
    assert client.post(reverse("mfa:passkey_add"), {"name": "mine", "credential": "{}"})["Location"] == VERIFY
    assert client.get(reverse("mfa:totp_add"))["Location"] == VERIFY
    assert not Passkey.objects.filter(user__username=uid).exists()


def test_a_garbage_passkey_answer_is_refused_without_an_error(admin_with_app) -> None:
    uid, _ = admin_with_app
    Passkey.objects.create(user=User.objects.get(username=uid), name="key", credential_id="AAAA", public_key=b"x")
    client = Client()
    password(client, uid)
    client.get(VERIFY)
    for answer in ("{", "[]", '{"id": "AAAA"}', '{"id":"AAAA","rawId":"AAAA","response":{},"type":"public-key"}'):
        response = client.post(VERIFY, {"credential": answer})
        assert response.status_code == 200, answer
    assert not signed_in(client)


# --- a fresh second factor before actions on others --------------------------------------------------


def age_factor(client: Client, seconds: float) -> None:
    session = client.session
    session[assurance.SESSION_KEY] = {**session[assurance.SESSION_KEY], "at": time.time() - seconds}
    session.save()


def signed_in_long_ago(uid: str, secret: str) -> Client:
    """Signed in with the app, the factor given longer ago than SECOND_FACTOR_MAX_AGE."""
    client = Client()
    password(client, uid)
    code(client, totp.code_for(secret, totp.step_at()))
    age_factor(client, settings.SECOND_FACTOR_MAX_AGE + 1)
    return client


def test_suspending_asks_for_the_factor_again_when_it_is_old(admin_with_app, make_directory_user) -> None:
    uid, secret = admin_with_app
    target = make_directory_user()
    client = signed_in_long_ago(uid, secret)
    suspend = reverse("directory:suspend", kwargs={"uid": target.uid})

    assert client.get(suspend)["Location"].startswith(VERIFY + "?next=")
    refused = client.post(suspend, {"reason": "spam"}, HTTP_REFERER=f"http://testserver{suspend}")
    assert refused["Location"].startswith(VERIFY)
    assert not SenderSuspension.objects.filter(uid=target.uid).exists()

    confirmed = client.post(f"{VERIFY}?next={suspend}", {"code": totp.code_for(secret, totp.step_at() + 1)})
    assert confirmed["Location"] == suspend
    assert client.post(suspend, {"reason": "spam"}).status_code == 302
    assert SenderSuspension.objects.filter(uid=target.uid).exists()


@pytest.mark.parametrize("name", ["directory:reset_password", "directory:disable", "directory:reinstate", "mfa:reset"])
def test_other_actions_on_people_ask_for_a_fresh_factor_too(name, admin_with_app, make_directory_user) -> None:
    uid, secret = admin_with_app
    target = make_directory_user()
    client = signed_in_long_ago(uid, secret)
    response = client.post(reverse(name, kwargs={"uid": target.uid}), {})
    assert response.status_code == 302 and response["Location"].startswith(VERIFY)


# --- reset by staff -----------------------------------------------------------------------------------


@pytest.fixture
def staff_client(make_directory_user) -> Callable[[str], tuple[Client, str]]:
    def make(role: str) -> tuple[Client, str]:
        person = make_directory_user(role=role)
        client = Client()
        sign_in_client(client, person.uid)
        return client, person.uid

    return make


def test_an_admin_removes_a_helpdesk_persons_factors_which_ends_their_sessions(
    staff_client, django_capture_on_commit_callbacks
) -> None:
    admin, admin_uid = staff_client("admin")
    victim, victim_uid = staff_client("helpdesk")
    assert signed_in(victim)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin.post(reverse("mfa:reset", kwargs={"uid": victim_uid}))

    assert response.status_code == 302
    assert len(callbacks) == 1  # the notice is sent after the commit
    user = User.objects.get(username=victim_uid)
    assert not services.has_second_factor(user) and not RecoveryCode.objects.filter(user=user).exists()
    assert not signed_in(victim)
    event = AuditEvent.objects.get(action="second-factor.reset", target=victim_uid)
    assert event.actor_name == admin_uid and "authenticator app" in event.detail
    # They sign in with the password and must enrol again.
    again = Client()
    password(again, victim_uid)
    assert again.get(VERIFY)["Location"] == reverse("mfa:enrol")


def test_helpdesk_resets_an_end_user_but_never_an_admin_and_nobody_resets_themselves(staff_client) -> None:
    helpdesk, helpdesk_uid = staff_client("helpdesk")
    admin, admin_uid = staff_client("admin")
    user_client, user_uid = staff_client("end user")
    enrol_app(user_client)

    assert helpdesk.post(reverse("mfa:reset", kwargs={"uid": admin_uid})).status_code == 403
    assert services.has_second_factor(User.objects.get(username=admin_uid))
    assert admin.post(reverse("mfa:reset", kwargs={"uid": admin_uid})).status_code == 403
    assert helpdesk.post(reverse("mfa:reset", kwargs={"uid": helpdesk_uid})).status_code == 403
    assert user_client.post(reverse("mfa:reset", kwargs={"uid": helpdesk_uid})).status_code == 403
    assert services.has_second_factor(User.objects.get(username=helpdesk_uid))

    assert helpdesk.post(reverse("mfa:reset", kwargs={"uid": user_uid})).status_code == 302
    assert not services.has_second_factor(User.objects.get(username=user_uid))


def test_the_directory_page_shows_the_factors_and_the_reset_button_to_who_may(staff_client) -> None:
    admin, _ = staff_client("admin")
    helpdesk, _ = staff_client("helpdesk")
    _, other_admin_uid = staff_client("admin")
    page = admin.get(reverse("directory:detail", kwargs={"uid": other_admin_uid})).content.decode()
    assert "Authenticator app" in page and reverse("mfa:reset", kwargs={"uid": other_admin_uid}) in page
    page = helpdesk.get(reverse("directory:detail", kwargs={"uid": other_admin_uid})).content.decode()
    assert "Authenticator app" in page and reverse("mfa:reset", kwargs={"uid": other_admin_uid}) not in page


@pytest.mark.e2e
def test_the_person_is_told_by_mail_through_postfix(staff_client, django_capture_on_commit_callbacks) -> None:
    admin, admin_uid = staff_client("admin")
    _, victim_uid = staff_client("helpdesk")
    publish()  # the private Postfix knows the new mailbox
    with django_capture_on_commit_callbacks(execute=True):
        admin.post(reverse("mfa:reset", kwargs={"uid": victim_uid}))

    mail = delivered_message(f"{victim_uid}@{settings.MAIL_DOMAIN}")

    assert ResetNotice.objects.get(uid=victim_uid).sent_at is not None
    assert "Subject: Your second factor for mail sign-in was removed" in mail
    assert f"Return-Path: <{settings.NOTICE_SENDER}>" in mail
    assert "Auto-Submitted: auto-generated" in mail and admin_uid in mail


@pytest.mark.e2e
def test_a_notice_postfix_could_not_take_is_kept_and_sent_later(staff_client) -> None:
    admin, _ = staff_client("admin")
    _, victim_uid = staff_client("helpdesk")
    publish()
    with override_settings(MAIL_SUBMISSION_PORT=1):  # nothing listens there
        admin.post(reverse("mfa:reset", kwargs={"uid": victim_uid}))
        notice = ResetNotice.objects.get(uid=victim_uid)
        assert services.send_reset_notice(notice.pk) is False
    notice.refresh_from_db()
    assert notice.sent_at is None and notice.attempts >= 1 and notice.last_error
    ResetNotice.objects.filter(pk=notice.pk).update(created_at=notice.created_at - timedelta(minutes=5))

    assert services.send_pending_notices() == 0

    notice.refresh_from_db()
    assert notice.sent_at is not None
    assert "was removed" in delivered_message(f"{victim_uid}@{settings.MAIL_DOMAIN}")


def publish() -> None:
    publication.request_publication("test")
    outcome = publication.publish(coalesce=False)
    assert outcome.status in ("published", "unchanged"), outcome.error


def delivered_message(address: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        folder = maildir(address)
        if folder.is_dir():
            for path in folder.iterdir():
                return path.read_text(errors="replace")
        time.sleep(0.05)
    pytest.fail(f"nothing delivered to {address}")
