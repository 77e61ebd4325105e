"""The LDAP service accounts hold only the rights the app uses (deploy/ldap/acl.conf, loaded by
the private slapd)."""

import ldap3
import pytest
from django.conf import settings
from ldap3.core.exceptions import LDAPInsufficientAccessRightsResult, LDAPNoSuchObjectResult

from accounts import directory
from localservices.slapd import Slapd, ssha

SERVICES_DN = f"ou=services,{settings.LDAP_BASE_DN}"


def _bind(dn: str, password: str) -> ldap3.Connection:
    return ldap3.Connection(
        ldap3.Server(settings.LDAP_URI, get_info=ldap3.NONE),
        user=dn,
        password=password,
        auto_bind=ldap3.AUTO_BIND_NO_TLS,
        raise_exceptions=True,
    )


def _service(account: str) -> ldap3.Connection:
    slapd = Slapd()
    return _bind(slapd.service_dn(account), slapd.password_file(account).read_text().strip())


def _read(conn: ldap3.Connection, dn: str, *attributes: str) -> dict[str, list[object]]:
    try:
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=list(attributes) or ["*"])
    except LDAPNoSuchObjectResult:  # what slapd answers for an entry one may not see
        return {}
    return conn.entries[0].entry_attributes_as_dict if conn.entries else {}


def _refused(operation) -> bool:
    try:
        operation()
    except (LDAPInsufficientAccessRightsResult, LDAPNoSuchObjectResult):
        return True
    return False


@pytest.fixture
def user(make_directory_user) -> directory.DirectoryUser:
    return make_directory_user()


def test_the_app_account_cannot_touch_the_other_service_accounts(user) -> None:
    app = _service("mailadmin")
    dovecot_dn = Slapd().service_dn("dovecot")
    assert not _read(app, dovecot_dn, "userPassword").get("userPassword")
    assert _refused(lambda: app.modify(dovecot_dn, {"userPassword": [(ldap3.MODIFY_REPLACE, [ssha("mine now")])]}))
    assert _refused(lambda: app.add(f"cn=intruder,{SERVICES_DN}", ["organizationalRole"], {"cn": "intruder"}))
    assert _refused(lambda: app.delete(dovecot_dn))


def test_the_app_account_changes_only_the_member_lists_of_its_role_groups(user) -> None:
    app = _service("mailadmin")
    admin_group = settings.LDAP_ADMIN_GROUP_DN
    assert _refused(lambda: app.modify(admin_group, {"cn": [(ldap3.MODIFY_ADD, ["renamed"])]}))
    assert _refused(
        lambda: app.add(f"cn=new-group,{settings.LDAP_GROUPS_DN}", ["groupOfNames"], {"cn": "x", "member": user.dn})
    )
    assert _refused(lambda: app.delete(settings.LDAP_HELPDESK_GROUP_DN))
    # What the app does use still works.
    directory.add_to_group(user.uid, admin_group)
    assert user.uid in directory.group_member_uids(admin_group)
    directory.remove_from_group(user.uid, admin_group)
    assert user.uid not in directory.group_member_uids(admin_group)


def test_the_app_account_cannot_add_entries_outside_the_people_branch() -> None:
    app = _service("mailadmin")
    assert _refused(
        lambda: app.add(f"ou=elsewhere,{settings.LDAP_BASE_DN}", ["organizationalUnit"], {"ou": "elsewhere"})
    )
    assert _refused(lambda: app.modify(settings.LDAP_BASE_DN, {"o": [(ldap3.MODIFY_REPLACE, ["taken"])]}))


def test_dovecot_reads_password_values_and_changes_nothing(user) -> None:
    dovecot = _service("dovecot")
    seen = _read(dovecot, user.dn, "uid", "mail", "userPassword")
    assert seen["mail"] == [user.mail]
    assert str(seen["userPassword"][0]).startswith("{CRAM-MD5}") or seen["userPassword"][0].startswith(b"{CRAM-MD5}")
    before = directory.password_hash(user.uid)
    assert _refused(lambda: dovecot.modify(user.dn, {"userPassword": [(ldap3.MODIFY_REPLACE, ["{CRAM-MD5}00"])]}))
    assert _refused(lambda: dovecot.modify(user.dn, {"mail": [(ldap3.MODIFY_REPLACE, ["evil@example.org"])]}))
    assert directory.password_hash(user.uid) == before


def test_postfix_reads_the_sender_block_flag_but_never_a_password(user) -> None:
    directory.set_sender_blocked(user.uid, True)
    postfix = _service("postfix")
    seen = _read(postfix, user.dn, "mail", settings.LDAP_SENDER_BLOCK_ATTR, "userPassword")
    assert seen["mail"] == [user.mail]
    assert seen[settings.LDAP_SENDER_BLOCK_ATTR] in (["TRUE"], [True])  # True if ldap3 read the schema
    assert not seen.get("userPassword")  # ldap3 lists a requested attribute it did not get as []
    assert _refused(
        lambda: postfix.modify(user.dn, {settings.LDAP_SENDER_BLOCK_ATTR: [(ldap3.MODIFY_REPLACE, ["FALSE"])]})
    )
    assert directory.get_user(user.uid).sender_blocked


def test_anonymous_sees_nothing(user) -> None:
    anonymous = ldap3.Connection(ldap3.Server(settings.LDAP_URI, get_info=ldap3.NONE), auto_bind=True)
    anonymous.search(settings.LDAP_BASE_DN, "(objectClass=*)", attributes=["*"])
    assert anonymous.entries == []


def test_a_user_with_a_bindable_password_reads_only_their_own_entry(make_directory_user) -> None:
    other = make_directory_user()
    reader = make_directory_user(password=None)
    with directory.connection() as conn:
        conn.modify(reader.dn, {"userPassword": [(ldap3.MODIFY_REPLACE, [ssha("reader-pass")])]})
    conn = _bind(reader.dn, "reader-pass")
    assert _read(conn, reader.dn, "mail")["mail"] == [reader.mail]
    assert _read(conn, other.dn, "mail") == {}
    assert _read(conn, settings.LDAP_ADMIN_GROUP_DN, "member") == {}
    assert _refused(lambda: conn.modify(reader.dn, {"mail": [(ldap3.MODIFY_REPLACE, ["someone@example.org"])]}))


def _rules(text: str) -> list[str]:
    """Access rules as one normalised line each, from slapd.conf or LDIF continuation syntax."""
    text = text.replace("\n  ", " ").replace("\n    by", " by")
    rules = []
    for line in text.splitlines():
        line = line.removeprefix("olcAccess: ")
        if line.startswith("{"):
            line = line.split("}", 1)[1]
        if line.startswith("access to "):
            line = line.removeprefix("access ")
        if line.startswith("to "):
            rules.append(" ".join(line.split()))
    return rules


def test_the_cn_config_acls_are_the_tested_ones() -> None:
    ldap_dir = settings.BASE_DIR / "deploy" / "ldap"
    conf = (ldap_dir / "acl.conf").read_text().split("# --- Site-wide rules")[0]
    assert _rules((ldap_dir / "acl.ldif").read_text()) == _rules(conf)
    assert len(_rules(conf)) == 9
