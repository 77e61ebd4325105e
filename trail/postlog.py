"""The main.cf lines that make Postfix write its own log file (postlogd, Postfix 3.4 and later),
which the delivery trail follows. main_cf_lines is a plain function of the settings' values:
the private Postfix in localservices/ (before Django is set up) writes the same lines as
`manage.py postfix_config` prints through main_cf_section."""

from pathlib import Path

from django.conf import settings


def main_cf_lines(log_file: Path, written_by_postfix: bool) -> list[str]:
    if not written_by_postfix:
        return [f"# mailadmin delivery trail: follows syslog's {log_file} (MAILADMIN_MAILLOG_POSTLOG=0)"]
    return [
        "# mailadmin delivery trail: Postfix writes its own log (postlogd; master.cf needs the",
        "# postlog service, as Debian's has), which `manage.py follow_maillog` reads.",
        f"maillog_file_prefixes = {Path(log_file).parent}",
        f"maillog_file = {log_file}",
    ]


def main_cf_section() -> list[str]:
    return main_cf_lines(settings.MAILLOG_FILE, settings.MAILLOG_POSTLOG)
