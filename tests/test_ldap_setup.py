"""manage.py ldap_setup against a real slapd of its own: an "existing directory" with a manager
(rootdn), mail users and nothing of mailadmin's yet."""

import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import ldap3
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts import directory, ldap_setup
from audit.models import AuditEvent
from localservices.process import free_port, stop_pid, wait_for_port, wait_for_port_closed
from tests.test_hostile_input_forms import NASTY

pytestmark = pytest.mark.django_db

SCHEMAS = ["core", "cosine", "inetorgperson", "nis"]
MANAGER_DN = f"cn=admin,{settings.LDAP_BASE_DN}"


@dataclass
class ExistingDirectory:
    root: Path
    port: int
    manager_password_file: Path
    rules: Path | None = None

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def conf(self) -> str:
        manager_password = self.manager_password_file.read_text().strip()
        includes = "\n".join(f"include /etc/ldap/schema/{name}.schema" for name in SCHEMAS)
        rules = f"include {self.rules}\n" if self.rules else ""
        return (
            f"{includes}\ninclude {settings.BASE_DIR / 'deploy' / 'ldap' / 'mailadmin.schema'}\n"
            f"pidfile {self.root / 'slapd.pid'}\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n"
            f'database mdb\nsuffix "{settings.LDAP_BASE_DN}"\ndirectory {self.root / "data"}\n'
            f'rootdn "{MANAGER_DN}"\nrootpw {directory.ssha(manager_password)}\n{rules}'
        )

    def start(self) -> None:
        (self.root / "slapd.conf").write_text(self.conf())
        subprocess.run(["/usr/sbin/slapd", "-f", str(self.root / "slapd.conf"), "-h", f"{self.uri}/"], check=True)
        wait_for_port(self.port, "slapd")

    def start_with_cn_config(self) -> str:
        """Restart as Debian runs slapd: configured through cn=config, which root changes over
        ldapi:// with SASL EXTERNAL. Returns the ldapi URI."""
        socket = self.root / "ldapi"
        uri = "ldapi://" + str(socket).replace("/", "%2F")
        config_database = (
            "database config\n"
            'access to * by dn.exact="gidNumber=0+uidNumber=0,cn=peercred,cn=external,cn=auth" manage by * none\n'
        )
        conf = self.conf().replace("database mdb", config_database + "database mdb", 1)
        (self.root / "slapd.conf").write_text(conf)
        (self.root / "slapd.d").mkdir()
        subprocess.run(
            ["/usr/sbin/slaptest", "-Q", "-f", str(self.root / "slapd.conf"), "-F", str(self.root / "slapd.d")],
            check=True,
        )
        subprocess.run(["/usr/sbin/slapd", "-F", str(self.root / "slapd.d"), "-h", f"{self.uri}/ {uri}/"], check=True)
        wait_for_port(self.port, "slapd")
        return uri

    def stop(self) -> None:
        stop_pid(self.root / "slapd.pid")
        wait_for_port_closed(self.port)


def _base_tree() -> str:
    base = settings.LDAP_BASE_DN
    dc = base.split(",")[0].split("=", 1)[1]
    return (
        f"dn: {base}\nobjectClass: dcObject\nobjectClass: organization\ndc: {dc}\no: {dc}\n\n"
        f"dn: {settings.LDAP_PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n\n"
        f"dn: uid=carol,{settings.LDAP_PEOPLE_DN}\nobjectClass: inetOrgPerson\nobjectClass: mailAccount\n"
        f"uid: carol\ncn: Carol\nsn: Carol\nmail: carol@{settings.MAIL_DOMAIN}\nuserPassword: carol-secret\n"
    )


@pytest.fixture
def existing(tmp_path: Path, settings) -> Iterator[ExistingDirectory]:  # noqa: ANN001
    root = tmp_path / "slapd"
    (root / "data").mkdir(parents=True)
    manager_password_file = tmp_path / "manager-password"
    manager_password_file.write_text(secrets.token_urlsafe(16) + "\n")
    slapd = ExistingDirectory(root, free_port(), manager_password_file)
    (root / "slapd.conf").write_text(slapd.conf())
    subprocess.run(
        ["/usr/sbin/slapadd", "-q", "-f", str(root / "slapd.conf")], input=_base_tree(), text=True, check=True
    )
    slapd.start()
    settings.LDAP_URI = slapd.uri
    yield slapd
    slapd.stop()


def setup(existing: ExistingDirectory, password_dir: Path, *args: str) -> str:
    out = StringIO()
    call_command(
        "ldap_setup",
        "--bind-dn",
        MANAGER_DN,
        "--bind-password-file",
        str(existing.manager_password_file),
        "--password-dir",
        str(password_dir),
        *args,
        stdout=out,
    )
    return out.getvalue()


def manager(existing: ExistingDirectory) -> directory.Manager:
    return directory.Manager(MANAGER_DN, existing.manager_password_file.read_text().strip())


def all_dns() -> list[str]:
    return [
        *(entry.dn for entry in ldap_setup.container_entries()),
        *(account.dn for account in ldap_setup.service_accounts()),
        *ldap_setup.role_groups(),
    ]


def password_files(folder: Path) -> dict[str, tuple[str, int]]:
    return {path.name: (path.read_text(), path.stat().st_mode & 0o777) for path in sorted(folder.iterdir())}


def test_setup_adds_the_accounts_and_groups_and_each_account_binds_with_its_file(
    existing: ExistingDirectory, tmp_path: Path
) -> None:
    folder = tmp_path / "secrets"
    output = setup(existing, folder, "--admin", "carol")

    assert directory.existing_dns(manager(existing), all_dns()) == set(all_dns())
    assert folder.stat().st_mode & 0o777 == 0o700
    files = password_files(folder)
    assert set(files) == {"ldap-mailadmin-password", "ldap-dovecot-password", "ldap-postfix-password"}
    for account in ldap_setup.service_accounts():
        secret, mode = files[account.password_file(folder).name]
        assert mode == 0o600
        assert directory.can_bind(account.dn, secret.strip())
        assert not directory.can_bind(account.dn, secret.strip() + "x")
        assert secret.strip() not in output
    admins = directory.member_dns(manager(existing), settings.LDAP_ADMIN_GROUP_DN)
    assert admins == {settings.LDAP_SERVICE_DN.lower(), f"uid=carol,{settings.LDAP_PEOPLE_DN}".lower()}
    helpdesk = directory.member_dns(manager(existing), settings.LDAP_HELPDESK_GROUP_DN)
    assert helpdesk == {settings.LDAP_SERVICE_DN.lower()}
    assert "placeholder member" in output
    events = AuditEvent.objects.filter(action="ldap.setup")
    assert {event.target for event in events} == set(all_dns()) - {settings.LDAP_PEOPLE_DN}
    assert not any(secret.strip() in event.detail for secret, _ in files.values() for event in events)


def test_a_second_run_changes_nothing(existing: ExistingDirectory, tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    setup(existing, folder, "--admin", "carol")
    before = password_files(folder)

    output = setup(existing, folder, "--admin", "carol")

    assert "nothing to change" in output
    assert "added" not in output and "set the password" not in output
    assert password_files(folder) == before
    assert AuditEvent.objects.filter(action="ldap.setup").count() == 7


def test_dry_run_prints_the_ldif_with_the_placeholder_explained_and_changes_nothing(
    existing: ExistingDirectory, tmp_path: Path
) -> None:
    folder = tmp_path / "secrets"
    output = setup(existing, folder, "--dry-run", "--admin", "carol")

    assert directory.existing_dns(manager(existing), all_dns()) == {settings.LDAP_PEOPLE_DN}
    assert not folder.exists()
    assert not AuditEvent.objects.exists()
    services = ldap_setup.services_dn()
    assert f"dn: {services}\nchangetype: add\nobjectClass: organizationalUnit\nou: services\n" in output
    assert f"dn: cn=postfix,{services}\nchangetype: add\n" in output
    assert "userPassword:" not in output.replace("# userPassword:", "")
    assert f"of a new password, to be written to {folder}/ldap-postfix-password (mode 0600)" in output
    assert "groupOfNames needs at least one member: the app's service account holds the place" in output
    assert f"member: {settings.LDAP_SERVICE_DN}\nmember: uid=carol,{settings.LDAP_PEOPLE_DN}" in output
    assert f"dn: {settings.LDAP_PEOPLE_DN}\nchangetype: add" not in output  # it exists
    assert "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nadd: olcAccess" in output


def test_admin_is_added_to_an_existing_admins_group(existing: ExistingDirectory, tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    setup(existing, folder)
    carol = f"uid=carol,{settings.LDAP_PEOPLE_DN}"

    dry = setup(existing, folder, "--admin", "carol", "--dry-run")
    assert f"dn: {settings.LDAP_ADMIN_GROUP_DN}\nchangetype: modify\nadd: member\nmember: {carol}\n-" in dry
    assert carol.lower() not in directory.member_dns(manager(existing), settings.LDAP_ADMIN_GROUP_DN)

    output = setup(existing, folder, "--admin", "carol")
    assert f"added {carol} to {settings.LDAP_ADMIN_GROUP_DN}" in output
    assert carol.lower() in directory.member_dns(manager(existing), settings.LDAP_ADMIN_GROUP_DN)
    assert "nothing to change" in setup(existing, folder, "--admin", "carol")
    with pytest.raises(CommandError, match="no such user"):
        setup(existing, folder, "--admin", "nobody")


def test_an_existing_account_keeps_its_password_unless_a_file_names_another(
    existing: ExistingDirectory, tmp_path: Path
) -> None:
    folder = tmp_path / "secrets"
    setup(existing, folder)
    postfix = ldap_setup.service_accounts()[2]
    old = postfix.password_file(folder).read_text().strip()
    postfix.password_file(folder).unlink()

    output = setup(existing, folder)
    assert f"{postfix.dn} exists; its password is not in" in output
    assert directory.can_bind(postfix.dn, old)

    postfix.password_file(folder).write_text("a-new-password-for-postfix\n")
    output = setup(existing, folder)
    assert f"set the password of {postfix.dn}" in output
    assert directory.can_bind(postfix.dn, "a-new-password-for-postfix")
    assert not directory.can_bind(postfix.dn, old)


def test_the_written_access_rules_give_each_account_its_rights_in_slapd(
    existing: ExistingDirectory, tmp_path: Path
) -> None:
    folder = tmp_path / "secrets"
    rules = tmp_path / "mailadmin-acl.conf"
    output = setup(existing, folder, "--acl-format", "conf", "--acl-out", str(rules))
    assert f"wrote the access rules to {rules}" in output
    existing.stop()
    existing.rules = rules
    existing.start()

    assert_each_account_has_its_rights(existing, folder)


def test_the_access_rules_for_cn_config_load_with_ldapmodify_and_give_each_account_its_rights(
    existing: ExistingDirectory, tmp_path: Path
) -> None:
    folder = tmp_path / "secrets"
    rules = tmp_path / "acl.ldif"
    setup(existing, folder, "--acl-out", str(rules), "--acl-database", "olcDatabase={1}mdb,cn=config")
    existing.stop()
    ldapi = existing.start_with_cn_config()

    loaded = subprocess.run(
        ["ldapmodify", "-Q", "-Y", "EXTERNAL", "-H", ldapi, "-f", str(rules)], capture_output=True, text=True
    )

    assert loaded.returncode == 0, loaded.stderr
    assert_each_account_has_its_rights(existing, folder)


def assert_each_account_has_its_rights(existing: ExistingDirectory, folder: Path) -> None:
    def read(account: str, attribute: str) -> list[str]:
        dn = f"cn={account},{ldap_setup.services_dn()}"
        password = (folder / f"ldap-{account}-password").read_text().strip()
        conn = ldap3.Connection(existing.uri, dn, password, auto_bind=True)
        conn.search(f"uid=carol,{settings.LDAP_PEOPLE_DN}", "(objectClass=*)", ldap3.BASE, attributes=[attribute])
        values = conn.entries[0].entry_attributes_as_dict.get(attribute, []) if conn.entries else []
        conn.unbind()
        return [str(value) for value in values]

    assert read("postfix", "mail") == [f"carol@{settings.MAIL_DOMAIN}"]
    assert read("postfix", "userPassword") == []
    assert read("dovecot", "userPassword") != []
    anonymous = ldap3.Connection(existing.uri, auto_bind=True)
    anonymous.search(settings.LDAP_PEOPLE_DN, "(uid=carol)", attributes=["mail"])
    assert anonymous.entries == []


def test_a_hostile_bind_dn_or_admin_is_refused_and_nothing_is_written(
    existing: ExistingDirectory, tmp_path: Path
) -> None:
    folder = tmp_path / "secrets"
    for value in NASTY:
        with pytest.raises(CommandError, match="admin"):
            setup(existing, folder, "--admin", value)
        # Refused by the form, or (a well-formed DN naming nobody) by the directory.
        with pytest.raises(CommandError, match="bind_dn|the directory refused"):
            call_command(
                "ldap_setup",
                "--bind-dn",
                value,
                "--bind-password-file",
                str(existing.manager_password_file),
                "--password-dir",
                str(folder),
                stdout=StringIO(),
            )
    assert not folder.exists()
    assert directory.existing_dns(manager(existing), all_dns()) == {settings.LDAP_PEOPLE_DN}


def test_a_hostile_name_in_the_settings_is_refused_before_anything_is_written(
    existing: ExistingDirectory,
    tmp_path: Path,
    settings,  # noqa: ANN001
) -> None:
    settings.LDAP_HELPDESK_GROUP_DN = f"cn=x\nobjectClass: simpleSecurityObject,{settings.LDAP_GROUPS_DN}"
    folder = tmp_path / "secrets"
    with pytest.raises(CommandError, match="MAILADMIN_LDAP_HELPDESK_GROUP_DN"):
        setup(existing, folder)
    assert not folder.exists()
    assert directory.existing_dns(manager(existing), all_dns()) == {settings.LDAP_PEOPLE_DN}


def test_a_wrong_manager_password_is_a_plain_error(existing: ExistingDirectory, tmp_path: Path) -> None:
    existing.manager_password_file.write_text("two\nlines\n")
    with pytest.raises(CommandError, match="bind_password_file: .* must hold one line") as refused:
        setup(existing, tmp_path / "secrets")
    assert "two" not in str(refused.value)  # the content is never quoted
    existing.manager_password_file.write_text("not-the-password\n")
    with pytest.raises(CommandError, match="refused cn=admin"):
        setup(existing, tmp_path / "secrets")
    assert not (tmp_path / "secrets").exists()
