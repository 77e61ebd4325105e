"""The configuration generator: every main.cf, master.cf and ldap: .cf line mailadmin needs.

The wiring of the published tables is this app's; each config feature (POSTFIX_CONFIG_FEATURES)
adds its own lines and restriction items. `manage.py postfix_config`, the private Postfix of
the demo and the tests, and deploy/postfix/ all come from here. Functions of the settings
alone: no database, so localservices can use them before Django is set up.
"""

from pathlib import Path

from django.conf import settings

from postfix.features import ConfigContext, Restriction, config_features

# The base of each restriction list, after (and around) the features' items.
BASE_RESTRICTIONS = [
    Restriction("smtpd_recipient_restrictions", "permit_mynetworks", 50),
    Restriction("smtpd_recipient_restrictions", "permit_sasl_authenticated", 60),
    Restriction("smtpd_recipient_restrictions", "reject_unauth_destination", 70),
]


def context(**overrides: object) -> ConfigContext:
    values: dict[str, object] = {
        "map_dir": Path(settings.POSTFIX_MAP_DIR),
        "config_dir": Path(settings.POSTFIX_CONFIG_DIR),
        "map_type": settings.POSTFIX_MAP_TYPE,
    }
    values.update(overrides)
    return ConfigContext(**values)  # type: ignore[arg-type]


def _table_lines(ctx: ConfigContext) -> list[str]:
    return [
        "# mailadmin: domains, aliases, catch-alls and mailboxes (published by the Celery worker)",
        f"virtual_mailbox_domains = {ctx.table('mailbox_domains')}",
        f"virtual_alias_domains = {ctx.table('alias_domains')}",
        f"virtual_alias_maps = {ctx.table('virtual')}",
        f"virtual_mailbox_maps = {ctx.table('mailboxes')}",
        f"transport_maps = {ctx.table('transport')}",
    ]


def _table_restrictions(ctx: ConfigContext) -> list[Restriction]:
    senders = f"check_sender_access {ctx.table('sender_access')}"
    items = [
        # Disabled, expired and deleted aliases are refused before any catch-all is consulted.
        Restriction("smtpd_recipient_restrictions", f"check_recipient_access {ctx.table('recipient_access')}", 10),
        # Every address of a suspended user (mailboxes and aliases), after the live LDAP flag.
        Restriction("smtpd_sender_restrictions", senders, 20),
    ]
    if "submission" in ctx.services:
        items.append(Restriction("mailadmin_submission_sender_restrictions", senders, 40))
    return items


def restriction_lines(restrictions: list[Restriction]) -> list[str]:
    lines: list[str] = []
    for parameter in dict.fromkeys(item.parameter for item in restrictions):
        items = sorted((item for item in restrictions if item.parameter == parameter), key=lambda item: item.position)
        lines.append(f"{parameter} =")
        lines += [f"    {item.item}{',' if n < len(items) - 1 else ''}" for n, item in enumerate(items)]
    return lines


def main_cf(ctx: ConfigContext) -> list[str]:
    lines = _table_lines(ctx)
    restrictions = [*_table_restrictions(ctx), *BASE_RESTRICTIONS]
    for feature in config_features():
        lines += feature.main_cf(ctx)
        restrictions += feature.restrictions(ctx)
    return [*lines, "# mailadmin: restriction lists", *restriction_lines(restrictions)]


def master_cf(ctx: ConfigContext) -> list[str]:
    return [line for feature in config_features() for line in feature.master_cf(ctx)]


def cf_files(ctx: ConfigContext) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    for feature in config_features():
        files.update(feature.cf_files(ctx))
    return files
