"""The main.cf and master.cf lines that match the current settings.

Each feature adds its lines to MAIN_CF_SECTIONS / MASTER_CF_SECTIONS (a function returning
lines, so the values follow the settings at the time the command runs)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from accounts import sender_block
from outofoffice import handoff
from outofoffice.routing import vacation_transport_entries
from policy import postfix as policy_postfix
from trail import postlog


def _map(name: str) -> str:
    return f"hash:{Path(settings.POSTFIX_MAP_DIR) / name}"


def alias_maps_lines() -> list[str]:
    return [
        "# mailadmin: domains, aliases, catch-alls and mailboxes (published by the Celery worker)",
        f"virtual_mailbox_domains = {_map('mailbox_domains')}",
        f"virtual_alias_domains = {_map('alias_domains')}",
        f"virtual_alias_maps = {_map('virtual')}",
        f"virtual_mailbox_maps = {_map('mailboxes')}",
        f"transport_maps = {_map('transport')}",
        "# Disabled, expired and deleted aliases are refused before any catch-all is consulted.",
        "smtpd_recipient_restrictions =",
        f"    check_recipient_access {_map('recipient_access')},",
        *policy_postfix.recipient_restrictions(settings.POLICY_HOST, settings.POLICY_PORT),
        "    permit_mynetworks,",
        "    permit_sasl_authenticated,",
        "    reject_unauth_destination",
    ]


def responder_main_lines() -> list[str]:
    return handoff.main_cf_lines(settings.VACATION_ROUTING_DOMAIN)


def responder_master_lines() -> list[str]:
    return [
        "# mailadmin: vacation copies reach the responder in two hops (transport map entries):",
        *(f"#   {domain}  {transport}" for domain, transport in vacation_transport_entries()),
        *handoff.master_cf_lines(settings.VACATION_ROUTING_DOMAIN, settings.VACATION_HANDOFF_PORT),
        "lmtp      unix  -       -       n       -       -       lmtp",
    ]


def policy_main_lines() -> list[str]:
    return policy_postfix.main_cf_lines(settings.POLICY_TIMEOUT, settings.POLICY_DEFAULT_ACTION)


MAIN_CF_SECTIONS: list[Callable[[], list[str]]] = [
    alias_maps_lines,
    responder_main_lines,
    sender_block.main_cf_lines,
    policy_main_lines,
]
MAIN_CF_SECTIONS.append(postlog.main_cf_section)  # the delivery trail (trail/)
MASTER_CF_SECTIONS: list[Callable[[], list[str]]] = [responder_master_lines, sender_block.master_cf_lines]
EXTRA_FILES: list[Callable[[], list[str]]] = [sender_block.extra_files]


class Command(BaseCommand):
    help = "Print the main.cf / master.cf lines that match the current settings."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--part", choices=("main.cf", "master.cf", "files", "all"), default="all")

    def handle(self, *args: Any, **options: Any) -> None:
        parts = {"main.cf": MAIN_CF_SECTIONS, "master.cf": MASTER_CF_SECTIONS, "files": EXTRA_FILES}
        for part, sections in parts.items():
            if options["part"] not in (part, "all"):
                continue
            self.stdout.write(f"##### {part}")
            for section in sections:
                self.stdout.write("\n".join(section()))
                self.stdout.write("")
