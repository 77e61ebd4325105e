import subprocess

import pytest
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import Group
from django.test import Client, override_settings

from accounts import directory
from accounts.roles import Role, group_name, role_of
from audit.models import AuditEvent
from tests.conftest import DEMO_PASSWORD, pass_second_factor

pytestmark = pytest.mark.django_db


def _post_sign_in(client: Client, username: str, password: str, address: str = "127.0.0.1"):
    return client.post("/accounts/sign-in/", {"username": username, "password": password}, REMOTE_ADDR=address)


@pytest.mark.parametrize("role", [Role.END_USER, Role.HELPDESK, Role.ADMIN])
def test_each_role_signs_in_with_the_ldap_password_and_gets_its_role(make_directory_user, role) -> None:
    user = make_directory_user(role=str(role))
    client = Client()
    response = _post_sign_in(client, user.uid, DEMO_PASSWORD)
    assert response.status_code == 302
    if role != Role.END_USER:  # staff roles give a second factor too (the default policy)
        assert response["Location"] == "/second-factor/verify/"
        pass_second_factor(client, user.uid)
    home = client.get("/")
    assert home.status_code == 200
    assert role_of(home.wsgi_request.user) == role
    assert home.wsgi_request.user.email == user.mail


def test_each_sign_in_mirrors_the_entry_and_its_groups_into_the_user_row(make_directory_user) -> None:
    person = make_directory_user(role="helpdesk")
    user = authenticate(None, username=person.uid, password=DEMO_PASSWORD)
    assert user is not None and not user.has_usable_password()
    assert (user.username, user.first_name, user.last_name, user.email) == (person.uid, "Test", person.uid, person.mail)
    assert set(user.groups.values_list("name", flat=True)) == {group_name(settings.LDAP_HELPDESK_GROUP_DN)}

    user.groups.add(Group.objects.get_or_create(name="made-up-here")[0])
    directory.remove_from_group(person.uid, settings.LDAP_HELPDESK_GROUP_DN)
    directory.add_to_group(person.uid, settings.LDAP_ADMIN_GROUP_DN)
    again = authenticate(None, username=person.uid, password=DEMO_PASSWORD)
    assert again is not None and again.pk == user.pk
    assert set(again.groups.values_list("name", flat=True)) == {group_name(settings.LDAP_ADMIN_GROUP_DN)}
    assert authenticate(None, username=person.uid, password=DEMO_PASSWORD + "x") is None


def test_wrong_password_is_refused_and_recorded(make_directory_user) -> None:
    user = make_directory_user()
    response = _post_sign_in(Client(), user.uid, DEMO_PASSWORD + "x")
    assert response.status_code == 200
    assert "do not match" in response.content.decode()


def test_user_not_in_ldap_cannot_sign_in() -> None:
    response = _post_sign_in(Client(), "nobodyhere", DEMO_PASSWORD)
    assert response.status_code == 200
    assert "do not match" in response.content.decode()


def test_entry_without_password_cannot_sign_in(make_directory_user) -> None:
    user = make_directory_user(password=None)
    assert _post_sign_in(Client(), user.uid, "").status_code == 200
    assert _post_sign_in(Client(), user.uid, DEMO_PASSWORD).status_code == 200


def test_simple_bind_cannot_verify_a_cram_md5_password(make_directory_user) -> None:
    user = make_directory_user()
    result = subprocess.run(
        ["ldapwhoami", "-x", "-H", settings.LDAP_URI, "-D", user.dn, "-w", DEMO_PASSWORD],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0  # why the backend verifies the value itself


@pytest.mark.parametrize(
    "username,password",
    [
        ("*)(uid=*", DEMO_PASSWORD),
        ("*", "*"),
        ("admin)(|(uid=*", "x"),
        ("a\x00b", DEMO_PASSWORD),
        ("alice\nbob", DEMO_PASSWORD),
        ("x" * 10_000, DEMO_PASSWORD),
        ("alice", "y" * 10_000),
        ("alice", "pass\x00word"),
    ],
)
def test_hostile_sign_in_input_is_refused_plainly(make_directory_user, username, password) -> None:
    make_directory_user(uid="alice")
    response = _post_sign_in(Client(), username, password)
    assert response.status_code == 200
    assert "_auth_user_id" not in Client().session


def test_failed_sign_ins_are_throttled_per_account_and_address(make_directory_user) -> None:
    user = make_directory_user()
    for _ in range(settings.LOGIN_FAILURE_LIMIT):
        _post_sign_in(Client(), user.uid, "wrong", address="127.0.1.1")
    # From that address the right password no longer helps until the window passes.
    response = _post_sign_in(Client(), user.uid, DEMO_PASSWORD, address="127.0.1.1")
    assert response.status_code == 200
    assert "Too many failed sign-ins" in response.content.decode()


def test_failed_sign_ins_are_throttled_per_client_address(make_directory_user, settings) -> None:
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = settings.LOGIN_FAILURE_LIMIT
    victim = make_directory_user()
    for n in range(settings.LOGIN_FAILURE_LIMIT):
        _post_sign_in(Client(), f"guess{n}", "wrong", address="127.0.3.3")
    assert "Too many failed" in _post_sign_in(Client(), victim.uid, DEMO_PASSWORD, address="127.0.3.3").content.decode()
    assert _post_sign_in(Client(), victim.uid, DEMO_PASSWORD, address="127.0.3.4").status_code == 302


def test_sign_in_is_an_audit_event(make_directory_user) -> None:
    user = make_directory_user()
    _post_sign_in(Client(), user.uid, DEMO_PASSWORD, address="127.0.0.9")
    event = AuditEvent.objects.get(action="sign-in")
    assert (event.actor_name, event.target, event.client_address) == (user.uid, user.uid, "127.0.0.9")


def test_password_is_never_logged_or_audited(make_directory_user, caplog) -> None:
    user = make_directory_user()
    _post_sign_in(Client(), user.uid, DEMO_PASSWORD)
    _post_sign_in(Client(), user.uid, "wrong-secret-xyz")
    text = caplog.text + " ".join(str(e.__dict__) for e in AuditEvent.objects.all())
    assert DEMO_PASSWORD not in text and "wrong-secret-xyz" not in text
    assert "CRAM-MD5" not in text


def test_directory_down_gives_a_clear_message(make_directory_user) -> None:
    user = make_directory_user()
    with override_settings(LDAP_URI="ldap://127.0.0.1:1"):
        response = _post_sign_in(Client(), user.uid, DEMO_PASSWORD)
    assert "directory is not answering" in response.content.decode()
    assert not directory.get_user("nobodyhere")
