"""A private slapd with the mailadmin schema, base tree, indexes and ACLs."""

import base64
import hashlib
import os
import re
import secrets
import subprocess
from pathlib import Path

from localservices.process import ServiceError, read_pid, run, stop_pid, wait_for_port, wait_for_port_closed
from mailadmin import settings

SCHEMA_DIR = Path("/etc/ldap/schema")
PROJECT_SCHEMA = settings.BASE_DIR / "deploy" / "ldap" / "mailadmin.schema"
ACL_FILE = settings.BASE_DIR / "deploy" / "ldap" / "acl.conf"
SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"

# Read-only service accounts besides the app's own: Dovecot's passdb and Postfix's ldap: tables.
READER_ACCOUNTS = ("dovecot", "postfix")


def ssha(password: str) -> str:
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 -- slapd {SSHA}
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def access_rules(base: str) -> str:
    """deploy/ldap/acl.conf, the documented ACLs, with this directory's names in place of the example's."""
    names = {
        "cn=mailadmin-admins,ou=groups,dc=example,dc=org": settings.LDAP_ADMIN_GROUP_DN,
        "cn=mailadmin-helpdesk,ou=groups,dc=example,dc=org": settings.LDAP_HELPDESK_GROUP_DN,
        "cn=mailadmin,ou=services,dc=example,dc=org": settings.LDAP_SERVICE_DN,
        "ou=people,dc=example,dc=org": settings.LDAP_PEOPLE_DN,
        "ou=groups,dc=example,dc=org": settings.LDAP_GROUPS_DN,
        "dc=example,dc=org": base,
        "mailSenderBlocked": settings.LDAP_SENDER_BLOCK_ATTR,
    }
    pattern = re.compile("|".join(re.escape(name) for name in sorted(names, key=len, reverse=True)))
    return pattern.sub(lambda match: names[match.group(0)], ACL_FILE.read_text())


class Slapd:
    def __init__(self) -> None:
        self.state_dir = settings.STATE_DIR / "slapd"
        self.port = settings.LDAP_PORT
        self.conf = self.state_dir / "slapd.conf"
        self.pidfile = self.state_dir / "slapd.pid"
        self.data_dir = self.state_dir / "data"
        self.secrets_dir = settings.STATE_DIR / "secrets"

    def password_file(self, account: str) -> Path:
        return self.secrets_dir / f"ldap-{account}-password"

    def service_dn(self, account: str) -> str:
        return f"cn={account},ou=services,{settings.LDAP_BASE_DN}"

    def _write_config(self) -> None:
        base = settings.LDAP_BASE_DN
        app = settings.LDAP_SERVICE_DN
        includes = "\n".join(
            f"include {SCHEMA_DIR / name}.schema" for name in ("core", "cosine", "inetorgperson", "nis")
        )
        self.conf.write_text(
            f"""{includes}
include {PROJECT_SCHEMA}
pidfile {self.pidfile}
argsfile {self.state_dir / "slapd.args"}
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload sssvlv
moduleload syncprov
sizelimit size.soft=500 size.hard=unlimited
database mdb
maxsize 4294967296
suffix "{base}"
directory {self.data_dir}
index objectClass eq
index uid,cn,mail eq,sub
index member eq
index {settings.LDAP_SENDER_BLOCK_ATTR} eq
limits dn.exact="{app}" size=unlimited time=unlimited
{access_rules(base)}
overlay sssvlv
overlay syncprov
"""
        )

    def _base_tree(self) -> str:
        base = settings.LDAP_BASE_DN
        dc = base.split(",")[0].split("=", 1)[1]
        entries = [
            f"dn: {base}\nobjectClass: dcObject\nobjectClass: organization\ndc: {dc}\no: {dc}\n",
            f"dn: ou=services,{base}\nobjectClass: organizationalUnit\nou: services\n",
            f"dn: {settings.LDAP_PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n",
            f"dn: {settings.LDAP_GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups\n",
        ]
        for account in ("mailadmin", *READER_ACCOUNTS):
            password = secrets.token_urlsafe(24)
            path = self.password_file(account)
            path.write_text(password + "\n")
            path.chmod(0o600)
            entries.append(
                f"dn: {self.service_dn(account)}\nobjectClass: organizationalRole\n"
                f"objectClass: simpleSecurityObject\ncn: {account}\nuserPassword: {ssha(password)}\n"
            )
        # groupOfNames needs a member: the app's service account holds the place.
        for group_dn in (settings.LDAP_ADMIN_GROUP_DN, settings.LDAP_HELPDESK_GROUP_DN):
            cn = group_dn.split(",")[0].split("=", 1)[1]
            entries.append(f"dn: {group_dn}\nobjectClass: groupOfNames\ncn: {cn}\nmember: {settings.LDAP_SERVICE_DN}\n")
        return "\n".join(entries)

    def initialise(self) -> None:
        if (self.data_dir / "data.mdb").exists():
            self._write_config()
            return
        if settings.LDAP_SERVICE_DN != self.service_dn("mailadmin"):
            raise ServiceError(
                "the private slapd expects MAILADMIN_LDAP_SERVICE_DN to be cn=mailadmin,ou=services,<base>"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.secrets_dir.mkdir(parents=True, exist_ok=True)
        self.secrets_dir.chmod(0o700)
        self._write_config()
        run([SLAPADD, "-q", "-f", str(self.conf)], input=self._base_tree())

    def start(self) -> None:
        if read_pid(self.pidfile) is not None:
            return
        self.initialise()
        run([SLAPD, "-f", str(self.conf), "-h", f"ldap://127.0.0.1:{self.port}/"])
        wait_for_port(self.port, "slapd")

    def stop(self) -> None:
        stop_pid(self.pidfile)
        wait_for_port_closed(self.port)

    def env(self) -> dict[str, str]:
        return {"MAILADMIN_LDAP_SERVICE_PASSWORD_FILE": str(self.password_file("mailadmin"))}

    def slapadd(self, ldif: str) -> None:
        """Bulk load (benchmarks): slapd must be stopped."""
        if read_pid(self.pidfile) is not None:
            raise ServiceError("stop slapd before slapadd")
        subprocess.run([SLAPADD, "-q", "-f", str(self.conf)], input=ldif, text=True, check=True, env=os.environ)
