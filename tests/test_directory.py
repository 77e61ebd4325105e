import subprocess

import ldap3
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from accounts import directory
from aliases.models import Alias, Domain
from audit.models import AuditEvent
from outofoffice.models import VacationReply
from tests.conftest import DEMO_PASSWORD

pytestmark = pytest.mark.django_db
NEW_PASSWORD = "Brand new mailbox secret 77"


def _admin_urls(uid: str) -> list[tuple[str, str]]:
    return [
        ("get", "/directory/new/"),
        ("post", "/directory/new/"),
        ("get", f"/directory/users/{uid}/password/"),
        ("post", f"/directory/users/{uid}/password/"),
        ("get", f"/directory/users/{uid}/disable/"),
        ("post", f"/directory/users/{uid}/disable/"),
        ("get", f"/directory/users/{uid}/suspend/"),
        ("post", f"/directory/users/{uid}/suspend/"),
        ("post", f"/directory/users/{uid}/reinstate/"),
    ]


@pytest.mark.parametrize("role", ["end user", "helpdesk"])
def test_every_admin_url_is_refused_to_helpdesk_and_end_users(sign_in, make_directory_user, role) -> None:
    target = make_directory_user()
    client = sign_in(role)
    for method, url in _admin_urls(target.uid):
        response = getattr(client, method)(url, {"reason": "x", "new_password": NEW_PASSWORD})
        assert response.status_code in (403, 404), (method, url, response.status_code)
    assert directory.get_user(target.uid).sender_blocked is False
    assert directory.has_password(target.uid)


def test_end_users_cannot_open_the_directory(sign_in, make_directory_user) -> None:
    other = make_directory_user()
    client = sign_in()
    assert client.get("/directory/").status_code == 403
    assert client.get(f"/directory/users/{other.uid}/").status_code == 403


def test_helpdesk_sees_users_but_no_admin_buttons(sign_in, make_directory_user) -> None:
    target = make_directory_user()
    client = sign_in("helpdesk")
    page = client.get(f"/directory/users/{target.uid}/").content.decode()
    assert target.mail in page and "Not suspended" in page
    assert "Suspend sender" not in page and "Reset password" not in page


def test_admin_search_finds_users_by_uid_name_and_address(sign_in, make_directory_user) -> None:
    target = make_directory_user(uid="zorbatest", mail=f"zorba.greek@{settings.MAIL_DOMAIN}")
    client = sign_in("admin")
    for query in ("zorbat", "Test zorba", "zorba.greek"):
        page = client.get("/directory/", {"q": query}).content.decode()
        assert f"/directory/users/{target.uid}/" in page, query
    page = client.get("/directory/", {"q": "nobody-like-this"}).content.decode()
    assert "No users match" in page


def test_search_with_ldap_filter_metacharacters_is_just_text(sign_in, make_directory_user) -> None:
    make_directory_user()
    client = sign_in("admin")
    for query in ("*", "*)(uid=*", "\\", "a)(|(objectClass=*"):
        response = client.get("/directory/", {"q": query})
        assert response.status_code == 200
        assert "/directory/users/" not in response.content.decode(), query


def test_search_pages_through_results(sign_in, make_directory_user) -> None:
    for n in range(27):
        make_directory_user(uid=f"pagetest{n:02d}")
    client = sign_in("admin")
    first = client.get("/directory/", {"q": "pagetest"}).content.decode()
    second = client.get("/directory/", {"q": "pagetest", "page": 2}).content.decode()
    assert first.count("/directory/users/pagetest") == 25 and "Next" in first
    assert second.count("/directory/users/pagetest") == 2


def test_admin_creates_a_user_who_can_sign_in_with_a_dovecot_password(sign_in, make_directory_user) -> None:
    client = sign_in("admin")
    response = client.post(
        "/directory/new/",
        {
            "uid": "newbie",
            "name": "Nina Newbie",
            "mail": f"Nina.Newbie@{settings.MAIL_DOMAIN}",
            "new_password": NEW_PASSWORD,
            "new_password_again": NEW_PASSWORD,
        },
    )
    try:
        assert response.status_code == 302
        person = directory.get_user("newbie")
        assert (person.cn, person.sn, person.mail) == ("Nina Newbie", "Newbie", f"nina.newbie@{settings.MAIL_DOMAIN}")
        stored = directory.password_hash("newbie")
        assert stored.startswith("{CRAM-MD5}")
        check = subprocess.run(["doveadm", "pw", "-t", stored, "-p", NEW_PASSWORD], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        assert Client().post("/accounts/sign-in/", {"username": "newbie", "password": NEW_PASSWORD}).status_code == 302
        event = AuditEvent.objects.get(action="account.create")
        assert event.target == "newbie" and NEW_PASSWORD not in event.detail and "CRAM" not in event.detail
    finally:
        directory.delete_user("newbie")


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("uid", "Bad Uid", "lower-case"),
        ("uid", "evil)(uid=*", "lower-case"),
        ("uid", "x\nmail: root@example.org", "lower-case"),
        ("name", "Eve\nInjected", "Control characters"),
        ("name", "<script>alert(1)</script>", "letters, spaces"),
        ("name", "x" * 101, "at most 100"),
        ("mail", "eve@example.org\r\nBcc: all@example.org", "Control characters"),
        ("mail", "eve*)(mail=*@example.org", "plain mailbox"),
        ("mail", "eve@elsewhere.test", "Mailboxes live in"),
        ("mail", "a@b@example.org", "plain mailbox"),
        ("new_password", "short", "too short"),
        ("new_password", "nul\x00byte password", "Null characters"),
    ],
)
def test_hostile_or_bad_new_user_input_changes_nothing(sign_in, field, value, message) -> None:
    client = sign_in("admin")
    data = {
        "uid": "hostile",
        "name": "Hostile Person",
        "mail": f"hostile@{settings.MAIL_DOMAIN}",
        "new_password": NEW_PASSWORD,
        "new_password_again": NEW_PASSWORD,
    }
    data[field] = value
    if field == "new_password":
        data["new_password_again"] = value
    response = client.post("/directory/new/", data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert directory.get_user("hostile") is None
    assert not AuditEvent.objects.filter(action="account.create").exists()


def test_new_user_mail_may_not_collide_with_a_mailbox_or_an_alias(sign_in, make_directory_user) -> None:
    existing = make_directory_user()
    client = sign_in("admin")
    owner = client.directory_user

    domain = Domain.objects.get_or_create(name=settings.MAIL_DOMAIN)[0]
    Alias.objects.create(owner=User.objects.get(username=owner.uid), local_part="taken", domain=domain)
    for address in (existing.mail.upper(), f"taken@{settings.MAIL_DOMAIN}"):
        response = client.post(
            "/directory/new/",
            {
                "uid": "collider",
                "name": "Coll Ider",
                "mail": address,
                "new_password": NEW_PASSWORD,
                "new_password_again": NEW_PASSWORD,
            },
        )
        assert "already a mailbox or an alias" in response.content.decode(), address
    assert directory.get_user("collider") is None


def test_disabled_account_cannot_sign_in_and_its_session_ends(sign_in) -> None:
    victim = sign_in()
    uid = victim.directory_user.uid
    admin = sign_in("admin")
    response = admin.post(f"/directory/users/{uid}/disable/", {"reason": "left the company"})
    assert response.status_code == 302
    assert directory.password_hash(uid) is None  # nothing for Dovecot's passdb either
    assert Client().post("/accounts/sign-in/", {"username": uid, "password": DEMO_PASSWORD}).status_code == 200
    assert victim.get("/").status_code == 302  # the open session is gone
    event = AuditEvent.objects.get(action="account.disable")
    assert (event.actor_name, event.target, event.detail) == (admin.directory_user.uid, uid, "left the company")
    assert "disabled: no password" in admin.get(f"/directory/users/{uid}/").content.decode()


def test_admin_cannot_disable_their_own_account(sign_in) -> None:
    admin = sign_in("admin")
    uid = admin.directory_user.uid
    response = admin.post(f"/directory/users/{uid}/disable/", {"reason": "oops"})
    assert "cannot disable your own account" in response.content.decode()
    assert directory.has_password(uid)


def test_reset_password_sets_a_new_password_and_enables_the_account(sign_in, make_directory_user) -> None:
    target = make_directory_user()
    admin = sign_in("admin")
    admin.post(f"/directory/users/{target.uid}/disable/", {"reason": "test"})
    weak = admin.post(
        f"/directory/users/{target.uid}/password/", {"new_password": "password1", "new_password_again": "password1"}
    )
    assert "too common" in weak.content.decode()
    assert directory.password_hash(target.uid) is None
    response = admin.post(
        f"/directory/users/{target.uid}/password/",
        {"new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD},
    )
    assert response.status_code == 302
    ok = Client().post("/accounts/sign-in/", {"username": target.uid, "password": NEW_PASSWORD})
    assert ok.status_code == 302
    event = AuditEvent.objects.get(action="account.password-reset")
    assert event.target == target.uid and NEW_PASSWORD not in event.detail


def test_user_page_shows_addresses_suspension_vacation_and_events(sign_in, make_directory_user) -> None:
    owner_client = sign_in()
    person = owner_client.directory_user
    domain = Domain.objects.get_or_create(name=settings.ALIAS_DOMAIN, defaults={"is_alias_domain": True})[0]
    Alias.objects.create(owner=User.objects.get(username=person.uid), local_part="shopsite", domain=domain)
    VacationReply.objects.create(uid=person.uid, address=person.mail, enabled=True, subject="Away in June")
    admin = sign_in("admin")
    page = admin.get(f"/directory/users/{person.uid}/").content.decode()
    assert person.mail in page and f"shopsite@{settings.ALIAS_DOMAIN}" in page
    assert "Away in June" in page and "Not suspended" in page and "sign-in" in page


def test_the_search_page_has_a_fixed_cost_in_queries_and_ldap_round_trips(
    sign_in, make_directory_user, django_assert_num_queries, monkeypatch
) -> None:
    for n in range(30):
        make_directory_user(uid=f"costtest{n:02d}")
    client = sign_in("admin")
    searches: list[str] = []
    binds: list[str] = []
    real_search, real_bind = ldap3.Connection.search, ldap3.Connection.bind

    def counting_search(self: ldap3.Connection, *args: object, **kwargs: object) -> object:
        searches.append(str(args[0]))
        return real_search(self, *args, **kwargs)

    def counting_bind(self: ldap3.Connection, *args: object, **kwargs: object) -> object:
        binds.append(str(self.user))
        return real_bind(self, *args, **kwargs)

    monkeypatch.setattr(ldap3.Connection, "search", counting_search)
    monkeypatch.setattr(ldap3.Connection, "bind", counting_bind)
    client.get("/directory/", {"q": "costtest", "sort": "-uid"})  # this thread's stamp connection is open
    searches.clear()
    binds.clear()
    # The session, its user (with its staff groups and whether it is suspended), people away now,
    # and the page's people's alias counts with their last sign-ins.
    with django_assert_num_queries(4):
        page = client.get("/directory/", {"q": "costtest"})
    assert page.content.decode().count("/directory/users/costtest") == 25
    # The change stamp on the kept connection, then one connection for the new page: the stamp
    # again, the two staff groups, one sorted page with its count, who has no password.
    assert (len(binds), len(searches)) == (1, 6)
    searches.clear()
    binds.clear()
    with django_assert_num_queries(4):
        client.get("/directory/", {"q": "costtest", "page": 2})
    assert (len(binds), len(searches)) == (1, 6)  # slapd's virtual list view: a later page costs the same
    searches.clear()
    binds.clear()
    # The same page again while the directory has not changed: only the change stamp is asked,
    # on the kept connection.
    with django_assert_num_queries(4):
        again = client.get("/directory/", {"q": "costtest", "page": 2})
    assert (len(binds), len(searches)) == (0, 1)
    assert again.content.decode().count("/directory/users/costtest") == 5
