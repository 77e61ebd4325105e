"""Create mailadmin's service accounts, role groups and access rules in an existing directory.

manage.py ldap_setup --bind-dn "cn=admin,dc=example,dc=org" --bind-password-file FILE
                     --password-dir /etc/mailadmin/ldap [--admin UID]
                     [--acl-format ldif|conf] [--acl-database DN] [--acl-out FILE] [--dry-run]

Adds what is missing (ou=services, the people and groups containers, cn=mailadmin, cn=dovecot,
cn=postfix, the two role groups) and leaves what exists; a second run changes nothing. A new
account's password comes from <password-dir>/ldap-<name>-password when that file exists, or is
generated and written there (mode 0600) before the entry is added. The access rules are
written (--acl-out) or printed for the directory's administrator to load: they go into
cn=config or slapd.conf, which the manager's bind cannot change. --dry-run prints the LDIF and
changes nothing. docs/deploy.md explains each step.
"""

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import directory, ldap_setup
from accounts.forms import LdapSetupForm
from audit.models import AuditLogUnavailable, record_event, require_audit_log
from mailadmin.form_checks import errors_text, read_secret_file


def _done(say: Callable[[str], None], dn: str, what: str) -> None:
    """Say what changed in the directory and record it in the audit log (no secret in either)."""
    say(what)
    record_event("ldap.setup", target=dn[:255], detail=what)


def _write_secret(path: Path, secret: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")


class Command(BaseCommand):
    help = "Create the LDAP service accounts, role groups and access rules in an existing directory."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind-dn", required=True, help="the directory manager (e.g. slapd's rootdn)")
        parser.add_argument("--bind-password-file", required=True, help="file holding its password")
        parser.add_argument("--password-dir", required=True, help="where service account passwords are kept")
        parser.add_argument("--admin", default="", help="uid of a mail user to put into the admins group")
        parser.add_argument("--acl-format", default="ldif", choices=("ldif", "conf"))
        parser.add_argument("--acl-database", default=ldap_setup.EXAMPLE_DATABASE, help="the mdb database in cn=config")
        parser.add_argument("--acl-out", default="", help="write the access rules to this file")
        parser.add_argument("--dry-run", action="store_true", help="print the LDIF; change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        form = LdapSetupForm({name: options[name] for name in LdapSetupForm.base_fields})
        if not form.is_valid():
            raise CommandError(errors_text(form))
        data = form.cleaned_data
        if not options["dry_run"]:
            try:
                require_audit_log()
            except AuditLogUnavailable as exc:
                raise CommandError(str(exc)) from None
        try:
            ldap_setup.checked_settings()
            rules = ldap_setup.access_rules(data["acl_format"], data["acl_database"])
        except ldap_setup.SetupError as exc:
            raise CommandError(str(exc)) from None
        manager = directory.Manager(data["bind_dn"], data["bind_password"])
        try:
            done = self._directory(manager, data["password_dir"], data["admin"], options["dry_run"])
        except directory.DirectoryError as exc:
            raise CommandError(str(exc)) from None
        self._access_rules(rules, data["acl_out"], data["acl_format"], options["dry_run"])
        if not done:
            self.stdout.write("# the directory already has every entry: nothing to change")

    def _directory(self, manager: directory.Manager, password_dir: Path, admin: str, dry_run: bool) -> int:
        accounts = ldap_setup.service_accounts()
        groups = ldap_setup.role_groups()
        admin_dn = directory.user_dn(admin) if admin else ""
        wanted = [entry.dn for entry in ldap_setup.container_entries()] + [a.dn for a in accounts] + groups
        existing = directory.existing_dns(manager, wanted + ([admin_dn] if admin else []))
        if admin and admin_dn not in existing:
            raise CommandError(f"--admin {admin}: no such user ({admin_dn})")
        say = self.stdout.write
        done = 0
        for entry in ldap_setup.container_entries():
            if entry.dn in existing:
                continue
            done += 1
            if dry_run:
                say(ldap_setup.ldif_add(entry))
            else:
                directory.add_entry(manager, entry)
                _done(say, entry.dn, f"added {entry.dn}")
        for account in accounts:
            done += self._account(manager, account, account.dn in existing, password_dir, dry_run)
        for group_dn in groups:
            members = [settings.LDAP_SERVICE_DN]
            if group_dn not in existing:
                done += 1
                if group_dn == settings.LDAP_ADMIN_GROUP_DN and admin:
                    members.append(admin_dn)
                entry = ldap_setup.group_entry(group_dn, members)
                if dry_run:
                    say(ldap_setup.ldif_add(entry, tuple(ldap_setup.PLACEHOLDER_NOTE.splitlines())))
                else:
                    directory.add_entry(manager, entry)
                    _done(say, group_dn, f"added {group_dn} (placeholder member {settings.LDAP_SERVICE_DN})")
            elif group_dn == settings.LDAP_ADMIN_GROUP_DN and admin:
                if admin_dn.lower() not in directory.member_dns(manager, group_dn):
                    done += 1
                    if dry_run:
                        say(ldap_setup.ldif_add_member(group_dn, admin_dn))
                    else:
                        directory.add_member(manager, group_dn, admin_dn)
                        _done(say, group_dn, f"added {admin_dn} to {group_dn}")
        return done

    def _account(
        self, manager: directory.Manager, account: ldap_setup.ServiceAccount, exists: bool, folder: Path, dry_run: bool
    ) -> int:
        path = account.password_file(folder)
        known = path.exists()
        password = ""
        if known:
            try:
                password = read_secret_file(str(path))
            except ValidationError as error:
                raise CommandError(" ".join(error.messages)) from None
        if exists:
            if not known:
                self.stdout.write(f"# {account.dn} exists; its password is not in {path}, so it is left alone")
                return 0
            if directory.can_bind(account.dn, password):
                return 0
            if dry_run:
                self.stdout.write(
                    f"dn: {account.dn}\nchangetype: modify\nreplace: userPassword\n"
                    f"# userPassword: {{SSHA}} of the password in {path} (not shown)\n-\n\n"
                )
            else:
                directory.set_entry_password(manager, account.dn, password)
                _done(self.stdout.write, account.dn, f"set the password of {account.dn} to the one in {path}")
            return 1
        source = f"the password in {path}" if known else f"a new password, to be written to {path} (mode 0600)"
        if dry_run:
            entry = ldap_setup.account_entry(account, "")
            self.stdout.write(ldap_setup.ldif_add(entry, (f"# userPassword: {{SSHA}} of {source} (not shown)",)))
            return 1
        if not known:
            password = secrets.token_urlsafe(24)
            _write_secret(path, password)
        directory.add_entry(manager, ldap_setup.account_entry(account, directory.ssha(password)))
        _done(self.stdout.write, account.dn, f"added {account.dn} with {source.replace('to be written', 'written')}")
        return 1

    def _access_rules(self, rules: str, out: Path | None, kind: str, dry_run: bool) -> None:
        load = (
            "ldapmodify -Y EXTERNAL -H ldapi:/// -f FILE  (as root on the directory server)"
            if kind == "ldif"
            else "include FILE in the database section of slapd.conf, before your own rules; restart slapd"
        )
        if out is None or dry_run:
            self.stdout.write(f"# access rules; load them with: {load}")
            self.stdout.write(rules, ending="")
            return
        if out.exists() and out.read_text() == rules:
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        temporary = out.with_name(f".{out.name}.tmp")
        temporary.write_text(rules)
        temporary.chmod(0o644)
        temporary.replace(out)
        self.stdout.write(f"wrote the access rules to {out}; load them with: {load.replace('FILE', str(out))}")
