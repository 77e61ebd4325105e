"""Apply the generated Postfix configuration to an existing Postfix (docs/deploy.md).

manage.py postfix_apply [-c /etc/postfix] [--submission] --ldap-password-file FILE [--dry-run]

Merges into the host's main.cf and master.cf (postfix/merge.py: postconf -e / -M / -P
semantics, lists merged, only the services asked for), writes the ldap: tables with the real
bind password (mode 0640 root:postfix, atomically), then asks `postconf` for warnings.
--dry-run prints the changes and the new files (password masked) and writes nothing.
"""

import difflib
import grp
import os
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.models import AuditLogUnavailable, record_event, require_audit_log
from mailadmin.form_checks import errors_text
from postfix import config, features, postmap
from postfix.forms import PostfixApplyForm
from postfix.merge import (
    SHARED_SERVICES,
    Desired,
    MergeError,
    checked_lines,
    desired_from_generated,
    ldap_table_text,
    local_destination_conflicts,
    masked,
    merge,
    referenced_ldap_tables,
    without_ldap,
)

LDAP_TABLE_MODE = 0o640


def generated_configuration(config_dir: Path) -> tuple[str, str, dict[str, list[str]]]:
    """The one call into the configuration generator (postfix/config.py): main.cf text,
    master.cf text and the ldap: tables (file name → lines) for the current settings, with the
    tables in config_dir. Every optional service is generated; the merge keeps those asked for."""
    ctx = config.context(config_dir=config_dir, services=frozenset(SHARED_SERVICES))
    main_cf = "\n".join(checked_lines(config.main_cf(ctx)))
    master_cf = "\n".join(checked_lines(config.master_cf(ctx)))
    files = {name: checked_lines(lines) for name, lines in config.cf_files(ctx).items()}
    return main_cf, master_cf, files


def _write_atomically(path: Path, text: str, mode: int, uid: int, gid: int) -> None:
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        os.fchown(fd, uid, gid)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _needs_writing(path: Path, text: str, mode: int, uid: int, gid: int) -> bool:
    if not path.exists():
        return True
    info = path.stat()
    return path.read_text() != text or (info.st_mode & 0o7777, info.st_uid, info.st_gid) != (mode, uid, gid)


class Command(BaseCommand):
    help = "Merge the generated Postfix configuration into an existing Postfix (--dry-run: show the changes)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-c", "--config-dir", default=str(settings.POSTFIX_CONFIG_DIR), help="like postconf -c")
        parser.add_argument("--submission", action="store_true", help="also the submission service (port 587)")
        parser.add_argument("--ldap-password-file", default="", help="file holding the cn=postfix password")
        parser.add_argument("--without-ldap", action="store_true", help="a host without postfix-ldap: no ldap: tables")
        parser.add_argument("--dry-run", action="store_true", help="print the changes; write nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        form = PostfixApplyForm(
            {
                "config_dir": options["config_dir"],
                "ldap_password_file": options["ldap_password_file"],
                "submission": options["submission"],
            }
        )
        if not form.is_valid():
            raise CommandError(errors_text(form))
        dry_run: bool = options["dry_run"]
        if not dry_run:
            try:
                require_audit_log()
            except AuditLogUnavailable as exc:
                raise CommandError(str(exc)) from None
        config_dir: Path = form.cleaned_data["config_dir"]
        main_path, master_path = config_dir / "main.cf", config_dir / "master.cf"
        try:
            main_cf, master_cf, tables = generated_configuration(config_dir)
            services = ["submission"] if form.cleaned_data["submission"] else []
            desired = desired_from_generated(main_cf, master_cf, services)
            if options["without_ldap"]:
                desired = without_ldap(desired)
            new_main, new_master, changes = merge(main_path.read_text(), master_path.read_text(), desired)
            table_texts = self._ldap_tables(config_dir, desired, tables, form.cleaned_data["ldap_password"], dry_run)
            local = postmap.postconf_value(config_dir, "mydestination")
            clashes = local_destination_conflicts(local, features.served_domains())
        except (MergeError, postmap.PostmapError) as exc:
            raise CommandError(str(exc)) from None
        if clashes:
            raise CommandError(
                f"{', '.join(clashes)}: in this host's mydestination, so Postfix would deliver to local"
                " accounts instead of the mailboxes. Take them out of mydestination first."
            )
        if dry_run:
            self._show(main_path, new_main, master_path, new_master, changes, table_texts)
            return
        # The tables first: main.cf never names one that is not there yet.
        for path, text in table_texts.items():
            _write_atomically(path, text, LDAP_TABLE_MODE, 0, grp.getgrnam("postfix").gr_gid)
        for path, new in ((main_path, new_main), (master_path, new_master)):
            if new != path.read_text():
                info = path.stat()
                _write_atomically(path, new, info.st_mode & 0o7777, info.st_uid, info.st_gid)
        done = [str(change) for change in changes] + [
            f"{path.name}: written (mode 0640 root:postfix)" for path in table_texts
        ]
        for line in done:
            self.stdout.write(line)
        if done:
            record_event("postfix.apply", target=str(config_dir)[:255], detail="\n".join(done))
        else:
            self.stdout.write("nothing to change")
        self._check(config_dir)

    def _ldap_tables(
        self, config_dir: Path, desired: Desired, tables: dict[str, list[str]], password: str, dry_run: bool
    ) -> dict[Path, str]:
        """The ldap: tables the configuration uses that are missing or differ: path → text."""
        paths = sorted(referenced_ldap_tables(desired.parameters, desired.services))
        if paths and "ldap" not in postmap.postconf_map_types(config_dir):
            raise CommandError("this Postfix has no ldap: tables: install postfix-ldap, or give --without-ldap")
        if paths and not password and not dry_run:
            raise CommandError("the ldap: tables need the cn=postfix password: give --ldap-password-file")
        gid = grp.getgrnam("postfix").gr_gid
        texts: dict[Path, str] = {}
        for table in paths:
            path = Path(table)
            if path.parent != config_dir or path.name not in tables:
                raise CommandError(f"the configuration names an ldap: table this command does not write: {table}")
            text = ldap_table_text(tables[path.name], password or "dry-run-placeholder")
            if _needs_writing(path, text, LDAP_TABLE_MODE, 0, gid):
                texts[path] = text
        return texts

    def _show(
        self,
        main_path: Path,
        new_main: str,
        master_path: Path,
        new_master: str,
        changes: list[Any],
        tables: dict[Path, str],
    ) -> None:
        for change in changes:
            self.stdout.write(f"would {change}")
        for path, new in ((main_path, new_main), (master_path, new_master)):
            diff = difflib.unified_diff(
                path.read_text().splitlines(keepends=True), new.splitlines(keepends=True), str(path), f"{path} (new)"
            )
            self.stdout.write("".join(diff), ending="")
        for path, text in tables.items():
            self.stdout.write(f"would write {path} (mode 0640 root:postfix):")
            self.stdout.write(masked(text), ending="")
        if not changes and not tables:
            self.stdout.write("nothing to change")

    def _check(self, config_dir: Path) -> None:
        try:
            warnings = postmap.postconf_warnings(config_dir)
        except postmap.PostmapError as exc:
            raise CommandError(str(exc)) from None
        if warnings:
            raise CommandError("postconf reports:\n" + "\n".join(warnings))
        self.stdout.write(f"postconf -c {config_dir}: no warnings; run 'postfix reload' to use the changes")
