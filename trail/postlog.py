"""The delivery trail's part of the generated Postfix configuration (postfix/config.py): the
main.cf lines that make Postfix write its own log file (postlogd, Postfix 3.4 and later), which
`manage.py follow_maillog` reads."""

from pathlib import Path

from django.conf import settings

from postfix.features import ConfigContext, Restriction


def main_cf_lines(log_file: Path, written_by_postfix: bool) -> list[str]:
    if not written_by_postfix:
        return [f"# mailadmin delivery trail: follows syslog's {log_file} (MAILADMIN_MAILLOG_POSTLOG=0)"]
    return [
        "# mailadmin delivery trail: Postfix writes its own log (postlogd; master.cf needs the",
        "# postlog service, as Debian's has), which `manage.py follow_maillog` reads.",
        f"maillog_file_prefixes = {Path(log_file).parent}",
        f"maillog_file = {log_file}",
    ]


class MaillogConfig:
    def main_cf(self, ctx: ConfigContext) -> list[str]:
        return main_cf_lines(settings.MAILLOG_FILE, settings.MAILLOG_POSTLOG)

    def restrictions(self, ctx: ConfigContext) -> list[Restriction]:
        return []

    def master_cf(self, ctx: ConfigContext) -> list[str]:
        return []

    def cf_files(self, ctx: ConfigContext) -> dict[str, list[str]]:
        return {}


config = MaillogConfig()
