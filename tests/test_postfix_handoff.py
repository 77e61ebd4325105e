"""The Postfix lines of the vacation hand-off (outofoffice/handoff.py): what we print, what we
ship in deploy/postfix/, and what the command filter does when Postfix itself evaluates it.
The end-to-end behaviour (no notice to the sender) is in tests/test_responder_dsn_e2e.py."""

import subprocess
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from outofoffice import handoff

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "postfix"
DEFAULT_DOMAIN = "autoreply.mailadmin.invalid"


def filter_result(command: str) -> str | None:
    """What the private Postfix's smtpd_command_filter turns `command` into (None: left alone)."""
    table = subprocess.run(
        ["/usr/sbin/postconf", "-c", str(settings.POSTFIX_CONFIG_DIR), "-hx", "mailadmin_autoreply_command_filter"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    found = subprocess.run(
        ["/usr/sbin/postmap", "-c", str(settings.POSTFIX_CONFIG_DIR), "-q", command, table],
        capture_output=True,
        text=True,
    )
    assert found.returncode in (0, 1), found.stderr
    return found.stdout.strip() if found.returncode == 0 else None


def test_a_first_hop_recipient_becomes_the_routing_address_with_notify_never() -> None:
    first_hop = f"bob=example.org@handoff.{settings.VACATION_ROUTING_DOMAIN}"
    command = f"RCPT TO:<{first_hop}> NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob@example.org"
    assert filter_result(command) == f"RCPT TO:<bob=example.org@{settings.VACATION_ROUTING_DOMAIN}> NOTIFY=NEVER"


@pytest.mark.parametrize(
    "command",
    [
        "MAIL FROM:<carol@remote.example> SIZE=300",
        "RCPT TO:<bob@example.org> NOTIFY=FAILURE",
        f"RCPT TO:<bob=example.org@{DEFAULT_DOMAIN}.evil.example>",
        "RCPT TO:<bob=example.org@handoffxautoreply.mailadmin.invalid>",
        "EHLO mail.example.org",
    ],
)
def test_every_other_command_passes_the_filter_unchanged(command: str) -> None:
    assert filter_result(command) is None


def test_postfix_config_prints_the_hand_off_for_the_current_settings() -> None:
    out = StringIO()
    call_command("postfix_config", stdout=out)
    text = out.getvalue()
    port = settings.VACATION_HANDOFF_PORT
    assert f"127.0.0.1:{port} inet  n       -       n       -       -       smtpd" in text
    assert "-o smtpd_command_filter=$mailadmin_autoreply_command_filter" in text
    assert f"handoff.{settings.VACATION_ROUTING_DOMAIN}  mailadmin-autoreply:[127.0.0.1]:{port}" in text
    assert f"{settings.VACATION_ROUTING_DOMAIN}=OK" in text


def test_the_deploy_copies_match_what_the_defaults_generate() -> None:
    main_cf = (DEPLOY / "main.cf.out-of-office").read_text()
    master_cf = (DEPLOY / "master.cf.out-of-office").read_text()
    assert "\n".join(handoff.main_cf_lines(DEFAULT_DOMAIN)) in main_cf
    assert "\n".join(handoff.master_cf_lines(DEFAULT_DOMAIN, 10027)) in master_cf


@pytest.mark.parametrize("domain", ["auto reply.invalid", "autoreply.invalid>/ x", "(.*)", "localhost", ""])
def test_a_routing_domain_that_is_not_a_plain_domain_name_is_refused(domain: str) -> None:
    with pytest.raises(ValueError, match="not a plain domain name"):
        handoff.main_cf_lines(domain)
