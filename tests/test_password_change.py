import subprocess

import ldap3
import pytest
from django.conf import settings
from django.test import Client

from accounts import directory
from audit.models import AuditEvent
from localservices.slapd import ssha
from tests.conftest import DEMO_PASSWORD

pytestmark = pytest.mark.django_db
NEW = "Nëw lovely pässword 42"


def _change(client: Client, current: str, new: str, again: str | None = None):
    return client.post(
        "/accounts/password/",
        {"current_password": current, "new_password": new, "new_password_again": new if again is None else again},
    )


def test_change_password_end_to_end(sign_in) -> None:
    client = sign_in()
    uid = client.directory_user.uid
    response = _change(client, DEMO_PASSWORD, NEW)
    assert response.status_code == 302
    stored = directory.password_hash(uid)
    assert stored is not None and stored.startswith("{CRAM-MD5}")
    check = subprocess.run(["doveadm", "pw", "-t", stored, "-p", NEW], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    client.post("/accounts/sign-out/")
    assert Client().post("/accounts/sign-in/", {"username": uid, "password": DEMO_PASSWORD}).status_code == 200
    assert Client().post("/accounts/sign-in/", {"username": uid, "password": NEW}).status_code == 302
    event = AuditEvent.objects.get(action="password.change")
    assert (event.actor_name, event.target) == (uid, uid)
    assert NEW not in event.detail and "CRAM" not in event.detail


def test_wrong_current_password_changes_nothing(sign_in) -> None:
    client = sign_in()
    before = directory.password_hash(client.directory_user.uid)
    response = _change(client, "not it", NEW)
    assert "not your current password" in response.content.decode()
    assert directory.password_hash(client.directory_user.uid) == before


@pytest.mark.parametrize(
    "new,message",
    [
        ("short", "too short"),
        ("1234567890123", "entirely numeric"),
        ("password123", "too common"),
        ("line\nbreak here ok", "Control characters"),
        ("nul\x00byte here ok", "Null characters"),
        ("z" * 10_000, "at most"),
    ],
)
def test_weak_or_hostile_new_password_changes_nothing(sign_in, new, message) -> None:
    client = sign_in()
    before = directory.password_hash(client.directory_user.uid)
    response = _change(client, DEMO_PASSWORD, new)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert directory.password_hash(client.directory_user.uid) == before


def test_mismatched_repeat_changes_nothing(sign_in) -> None:
    client = sign_in()
    before = directory.password_hash(client.directory_user.uid)
    assert "differ" in _change(client, DEMO_PASSWORD, NEW, NEW + "!").content.decode()
    assert directory.password_hash(client.directory_user.uid) == before


def test_password_change_needs_sign_in_and_csrf(make_directory_user) -> None:
    assert Client().get("/accounts/password/").status_code == 302
    user = make_directory_user()
    client = Client(enforce_csrf_checks=True)
    client.post("/accounts/sign-in/", {"username": user.uid, "password": DEMO_PASSWORD})
    assert _change(client, DEMO_PASSWORD, NEW).status_code == 403


def test_anonymous_and_ordinary_users_cannot_read_password_hashes(make_directory_user) -> None:
    make_directory_user()
    base = ["ldapsearch", "-x", "-LLL", "-H", settings.LDAP_URI, "-b", settings.LDAP_BASE_DN]
    anonymous = subprocess.run([*base, "(objectClass=*)", "userPassword"], capture_output=True, text=True)
    assert "userPassword" not in anonymous.stdout
    # An ordinary user with a bindable password (CRAM-MD5 values cannot bind) sees no hashes either.
    reader = make_directory_user(password=None)
    with directory.connection() as conn:
        conn.modify(reader.dn, {"userPassword": [(ldap3.MODIFY_REPLACE, [ssha("reader-pass")])]})
    as_user = subprocess.run(
        [*base, "-D", reader.dn, "-w", "reader-pass", "(objectClass=*)", "userPassword", "mail"],
        capture_output=True,
        text=True,
    )
    assert as_user.returncode == 0, as_user.stderr
    assert "mail:" in as_user.stdout  # the bind worked and reads other attributes
    assert "userPassword" not in as_user.stdout
    # The service account does read them (Dovecot's passdb needs that).
    with directory.connection() as conn:
        conn.search(settings.LDAP_PEOPLE_DN, "(uid=*)", attributes=["userPassword"])
        assert any(e.entry_attributes_as_dict.get("userPassword") for e in conn.entries)
