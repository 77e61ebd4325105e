"""A signed-in session follows the directory: a change made with any LDAP tool reaches the
browser at the next check (SESSION_RECHECK_SECONDS), not at the end of an 8-hour session."""

import ldap3
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from accounts import directory
from accounts.session_check import CHECKED_AT
from tests.conftest import DEMO_PASSWORD, pass_second_factor

pytestmark = pytest.mark.django_db


def _ldap_modify(dn: str, changes: dict) -> None:
    # As another LDAP tool would: straight to slapd, not through the app's services.
    with directory.connection() as conn:
        conn.modify(dn, changes)


def _expire_check(client: Client) -> None:
    session = client.session
    session[CHECKED_AT] = 0.0
    session.save()


def test_an_admin_removed_from_the_admin_group_in_ldap_loses_admin_pages_at_the_next_check(
    sign_in, make_directory_user
):
    admin = sign_in("admin")
    target = make_directory_user()
    assert admin.get(f"/directory/users/{target.uid}/password/").status_code == 200
    _ldap_modify(
        settings.LDAP_ADMIN_GROUP_DN, {"member": [(ldap3.MODIFY_DELETE, [directory.user_dn(admin.directory_user.uid)])]}
    )
    # Within the interval nothing is asked of the directory.
    assert admin.get(f"/directory/users/{target.uid}/password/").status_code == 200
    _expire_check(admin)
    response = admin.post(
        f"/directory/users/{target.uid}/password/",
        {"new_password": "a much longer new secret 42", "new_password_again": "a much longer new secret 42"},
    )
    assert response.status_code == 403
    assert directory.session_facts(target.uid).has_password


def test_the_role_is_read_again_on_every_request_from_the_mirrored_groups(sign_in):
    # The check above mirrors the directory's groups; every request reads the role from them
    # (with the user, in one query), so a mirrored demotion applies to the very next request.
    admin = sign_in("admin")
    assert admin.get("/audit/").status_code == 200
    User.objects.get(username=admin.directory_user.uid).groups.clear()
    assert admin.get("/audit/").status_code == 403
    assert "Administration" not in admin.get("/aliases/").content.decode()


def test_a_person_added_to_the_helpdesk_group_gets_the_role_at_the_next_check(sign_in):
    client = sign_in("end user")
    assert client.get("/out-of-office/helpdesk/").status_code == 403
    directory.add_to_group(client.directory_user.uid, settings.LDAP_HELPDESK_GROUP_DN)
    _expire_check(client)
    # The new role needs a second factor (the default policy): asked for first, then the role.
    assert client.get("/out-of-office/helpdesk/")["Location"] == "/second-factor/verify/"
    pass_second_factor(client, client.directory_user.uid)
    assert client.get("/out-of-office/helpdesk/").status_code == 200


@pytest.mark.parametrize("change", ["password removed", "entry deleted", "password changed elsewhere"])
def test_a_session_ends_when_the_directory_no_longer_backs_it(sign_in, change):
    client = sign_in("admin")
    uid = client.directory_user.uid
    if change == "password removed":
        directory.remove_password(uid)
    elif change == "entry deleted":
        directory.delete_user(uid)
    else:
        directory.set_password(uid, "changed with ldappasswd 1234")
    _expire_check(client)
    response = client.get("/directory/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/sign-in/")
    assert client.get("/").status_code == 302  # signed out for good, not just this request


def test_changing_ones_own_password_ends_the_other_sessions_but_not_this_one(sign_in):
    first = sign_in("end user")
    uid = first.directory_user.uid
    second = Client()
    assert second.post("/accounts/sign-in/", {"username": uid, "password": DEMO_PASSWORD}).status_code == 302
    new = "an entirely new passphrase 77"
    response = first.post(
        "/accounts/password/",
        {"current_password": DEMO_PASSWORD, "new_password": new, "new_password_again": new},
    )
    assert response.status_code == 302
    assert first.get("/").status_code == 200
    _expire_check(first)
    assert first.get("/").status_code == 200
    assert second.get("/").status_code == 302


def test_an_admin_reset_ends_every_session_of_that_person(sign_in, make_directory_user):
    person = sign_in("end user")
    admin = sign_in("admin")
    new = "reset by the admin to this 55"
    admin.post(
        f"/directory/users/{person.directory_user.uid}/password/", {"new_password": new, "new_password_again": new}
    )
    assert person.get("/").status_code == 302


def test_with_the_directory_down_a_due_check_refuses_to_serve_on_stale_powers(sign_in, monkeypatch):
    admin = sign_in("admin")

    def unavailable(uid):
        raise directory.DirectoryUnavailable("down")

    monkeypatch.setattr(directory, "session_facts", unavailable)
    _expire_check(admin)
    assert admin.get("/directory/").status_code == 503
