"""What `manage.py ldap_setup` puts into an existing directory, as data: the containers, the
three service accounts, the two role groups, their LDIF and the access rules with the site's
names. Pure functions of the settings; accounts/directory.py does the LDAP work.

A groupOfNames must have at least one `member` (the schema says MUST), and a new role group has
nobody in it yet: the app's own service account holds the place. It is no person: it never signs
in, and roles are given only to members that are mail users under LDAP_PEOPLE_DN.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from accounts.directory import NewEntry, dn_first_value

ACL_LDIF = settings.BASE_DIR / "deploy" / "ldap" / "acl.ldif"
ACL_CONF = settings.BASE_DIR / "deploy" / "ldap" / "acl.conf"
# The example names deploy/ldap/acl.* are written with.
EXAMPLE_BASE = "dc=example,dc=org"
EXAMPLE_DATABASE = "olcDatabase={1}mdb,cn=config"
PLACEHOLDER_NOTE = (
    "# groupOfNames needs at least one member: the app's service account holds the place. It never\n"
    "# signs in, and only mail users under the people DN get a role from this group."
)
_LDIF_SAFE = re.compile(r"\A[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?\Z")


class SetupError(ValueError):
    """A name from the settings or the command line cannot be used safely."""


@dataclass(frozen=True)
class ServiceAccount:
    name: str
    dn: str

    def password_file(self, directory: Path) -> Path:
        return directory / f"ldap-{self.name}-password"


def checked_dn(value: str, what: str) -> str:
    """A DN that is safe in LDIF and in an ACL line: printable ASCII, and valid DN syntax."""
    if not _LDIF_SAFE.match(value) or '"' in value:
        raise SetupError(f"{what} must be printable ASCII without quotes or line breaks")
    try:
        dn_first_value(value)
    except ValueError:
        raise SetupError(f"{what} is not a DN: {value!r}") from None
    return value


def services_dn() -> str:
    return f"ou=services,{settings.LDAP_BASE_DN}"


def service_accounts() -> list[ServiceAccount]:
    return [
        ServiceAccount("mailadmin", settings.LDAP_SERVICE_DN),
        ServiceAccount("dovecot", f"cn=dovecot,{services_dn()}"),
        ServiceAccount("postfix", f"cn=postfix,{services_dn()}"),
    ]


def role_groups() -> list[str]:
    return [settings.LDAP_ADMIN_GROUP_DN, settings.LDAP_HELPDESK_GROUP_DN]


def checked_settings() -> None:
    """Every name the setup writes, checked before anything is written."""
    names = {
        "MAILADMIN_LDAP_BASE_DN": settings.LDAP_BASE_DN,
        "MAILADMIN_LDAP_PEOPLE_DN": settings.LDAP_PEOPLE_DN,
        "MAILADMIN_LDAP_GROUPS_DN": settings.LDAP_GROUPS_DN,
        "MAILADMIN_LDAP_SERVICE_DN": settings.LDAP_SERVICE_DN,
        "MAILADMIN_LDAP_ADMIN_GROUP_DN": settings.LDAP_ADMIN_GROUP_DN,
        "MAILADMIN_LDAP_HELPDESK_GROUP_DN": settings.LDAP_HELPDESK_GROUP_DN,
    }
    for name, value in names.items():
        checked_dn(value, name)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", settings.LDAP_SENDER_BLOCK_ATTR):
        raise SetupError("MAILADMIN_LDAP_SENDER_BLOCK_ATTR is not an attribute name")


def container_entries() -> list[NewEntry]:
    return [
        NewEntry(dn, {"objectClass": ["organizationalUnit"], "ou": [dn_first_value(dn)]})
        for dn in (services_dn(), settings.LDAP_PEOPLE_DN, settings.LDAP_GROUPS_DN)
    ]


def account_entry(account: ServiceAccount, hashed_password: str) -> NewEntry:
    return NewEntry(
        account.dn,
        {
            "objectClass": ["organizationalRole", "simpleSecurityObject"],
            "cn": [dn_first_value(account.dn)],
            "userPassword": [hashed_password],
        },
    )


def group_entry(group_dn: str, members: list[str]) -> NewEntry:
    return NewEntry(group_dn, {"objectClass": ["groupOfNames"], "cn": [dn_first_value(group_dn)], "member": members})


def ldif_add(entry: NewEntry, comments: tuple[str, ...] = ()) -> str:
    """The entry as an LDIF add record; a userPassword is never shown (say where it comes from
    in a comment)."""
    lines = [f"dn: {entry.dn}", "changetype: add", *comments]
    for name, values in entry.attributes.items():
        if name != "userPassword":
            lines += [f"{name}: {value}" for value in values]
    return "\n".join(lines) + "\n\n"


def ldif_add_member(group_dn: str, member_dn: str) -> str:
    return f"dn: {group_dn}\nchangetype: modify\nadd: member\nmember: {member_dn}\n-\n\n"


def _site_names(text: str) -> str:
    names = {
        "cn=mailadmin-admins,ou=groups," + EXAMPLE_BASE: settings.LDAP_ADMIN_GROUP_DN,
        "cn=mailadmin-helpdesk,ou=groups," + EXAMPLE_BASE: settings.LDAP_HELPDESK_GROUP_DN,
        "cn=mailadmin,ou=services," + EXAMPLE_BASE: settings.LDAP_SERVICE_DN,
        "ou=people," + EXAMPLE_BASE: settings.LDAP_PEOPLE_DN,
        "ou=groups," + EXAMPLE_BASE: settings.LDAP_GROUPS_DN,
        EXAMPLE_BASE: settings.LDAP_BASE_DN,
        "mailSenderBlocked": settings.LDAP_SENDER_BLOCK_ATTR,
    }
    pattern = re.compile("|".join(re.escape(name) for name in sorted(names, key=len, reverse=True)))
    return pattern.sub(lambda match: names[match.group(0)], text)


def access_rules(kind: str, database_dn: str) -> str:
    """deploy/ldap/acl.ldif (kind "ldif", for cn=config; database_dn is the mdb database's DN)
    or acl.conf without its site-wide rules (kind "conf", for slapd.conf), with this site's names."""
    if kind == "ldif":
        database = checked_dn(database_dn, "the database DN")
        rules = ACL_LDIF.read_text().replace(f"dn: {EXAMPLE_DATABASE}", f"dn: {database}")
        rules = rules[rules.index("dn: ") :]
    else:
        rules = ACL_CONF.read_text().split("# --- Site-wide rules.", 1)[0]
        rules = rules[rules.index("\n\n") + 2 :]  # the file's own header says to edit the names
    header = "# mailadmin's access rules (manage.py ldap_setup), before the database's own rules\n"
    return header + _site_names(rules).rstrip() + "\n"
