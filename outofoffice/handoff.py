"""How a vacation copy reaches the responder without ever notifying the original sender.

A copy added by virtual aliasing shares the original message's envelope: if it bounced or
expired (responder refusing it, or down longer than maximal_queue_lifetime), or if delay
warnings are on, Postfix would tell the *sender* about <user>=<domain>@<routing domain> —
the mailbox address behind an alias, and our internal routing. Postfix suppresses every
notice for a recipient with DSN NOTIFY=NEVER, but virtual aliasing cannot set it on one
target, and automatic BCC (which can) is not added to mail Postfix generates itself, such as
the bounces the responder must also see.

So the copy takes two hops inside this Postfix:
1. virtual: mailbox -> mailbox, <user>=<domain>@handoff.<routing domain>; the transport map
   sends that domain to HANDOFF_TRANSPORT, an SMTP client, to a loopback smtpd of our own;
2. that smtpd rewrites each RCPT to <user>=<domain>@<routing domain> NOTIFY=NEVER
   (smtpd_command_filter), so the copy becomes a new queue entry that Postfix retries as
   usual, drops silently when it expires or is refused, and never reports on.
The first hop is Postfix talking to itself on loopback; it only fails if Postfix does.

Plain functions of the settings' values (no database): part of the configuration that
postfix/config.py generates for `manage.py postfix_config`, the private Postfix and deploy/.
"""

import re

from django.conf import settings

from postfix.features import ConfigContext, Restriction

HANDOFF_TRANSPORT = "mailadmin-autoreply"
HANDOFF_HOST = "127.0.0.1"

_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+\Z")


def handoff_domain(routing_domain: str) -> str:
    """The domain of the first hop; a subdomain, so one setting names both."""
    return f"handoff.{_checked(routing_domain)}"


def _checked(routing_domain: str) -> str:
    # The domain goes into a regular expression and a master.cf line: letters, digits,
    # hyphens and dots only, so nothing in it can change their meaning.
    domain = routing_domain.lower()
    if not _DOMAIN.match(domain):
        raise ValueError(f"the vacation routing domain {routing_domain!r} is not a plain domain name")
    return domain


def command_filter(routing_domain: str) -> str:
    """An inline regexp table for smtpd_command_filter: first-hop RCPT -> responder RCPT, NOTIFY=NEVER.

    Any NOTIFY or ORCPT the first hop passes on is dropped with the rest of the line. "$$" is
    main.cf's way to write the "$" of "$1"."""
    domain = _checked(routing_domain)
    first_hop = handoff_domain(domain).replace(".", "\\.")
    return f"regexp:{{{{/^RCPT\\s+TO:\\s*<([^<>@]+)@{first_hop}>/ RCPT TO:<$$1@{domain}> NOTIFY=NEVER}}}}"


def main_cf_lines(routing_domain: str) -> list[str]:
    domain = _checked(routing_domain)
    return [
        "# mailadmin out of office: the hand-off smtpd (master.cf) re-queues each vacation copy",
        "# for the responder with DSN NOTIFY=NEVER: no bounce or delay notice about a copy ever",
        "# goes to the sender; the copy is retried like any mail and dropped when it expires.",
        f"mailadmin_autoreply_command_filter = {command_filter(domain)}",
        f"mailadmin_autoreply_recipient_restrictions = check_recipient_access inline:{{ {domain}=OK }}, reject",
    ]


def master_cf_lines(routing_domain: str, handoff_port: int) -> list[str]:
    domain = _checked(routing_domain)
    return [
        f"# mailadmin out of office: first hop of a vacation copy ({handoff_domain(domain)}",
        "# in the transport map), to the loopback hand-off smtpd below.",
        f"{HANDOFF_TRANSPORT} unix  -       -       n       -       -       smtp",
        "  -o syslog_name=postfix/autoreply-handoff",
        "  -o smtp_tls_security_level=none",
        "  -o smtp_sasl_auth_enable=no",
        "# The hand-off smtpd: only loopback, only copies; its own hostname, or the SMTP client",
        "# above would refuse to talk to a server greeting with ours (mail loop check).",
        f"{HANDOFF_HOST}:{handoff_port} inet  n       -       n       -       -       smtpd",
        "  -o syslog_name=postfix/autoreply-handoff",
        f"  -o myhostname={handoff_domain(domain)}",
        "  -o mynetworks=127.0.0.0/8",
        "  -o smtpd_command_filter=$mailadmin_autoreply_command_filter",
        "  -o smtpd_client_restrictions=permit_mynetworks,reject",
        "  -o smtpd_helo_restrictions=",
        "  -o smtpd_sender_restrictions=",
        "  -o smtpd_relay_restrictions=",
        "  -o smtpd_recipient_restrictions=$mailadmin_autoreply_recipient_restrictions",
        "  -o smtpd_data_restrictions=",
        "  -o smtpd_end_of_data_restrictions=",
        "  -o smtpd_tls_security_level=none",
        "  -o smtpd_sasl_auth_enable=no",
        "  -o smtpd_milters=",
        "  -o smtpd_proxy_filter=",
        "  -o content_filter=",
        "  -o receive_override_options=no_header_body_checks,no_milters,no_address_mappings",
    ]


def transport_entries(routing_domain: str, handoff_port: int, responder: str) -> list[tuple[str, str]]:
    """(domain, transport) pairs: first hop to the hand-off smtpd, second hop to the responder."""
    domain = _checked(routing_domain)
    return [
        (handoff_domain(domain), f"{HANDOFF_TRANSPORT}:[{HANDOFF_HOST}]:{handoff_port}"),
        (domain, responder),
    ]


class HandoffConfig:
    """The vacation hand-off's part of the generated configuration (postfix/config.py)."""

    def main_cf(self, ctx: ConfigContext) -> list[str]:
        return main_cf_lines(settings.VACATION_ROUTING_DOMAIN)

    def restrictions(self, ctx: ConfigContext) -> list[Restriction]:
        return []

    def master_cf(self, ctx: ConfigContext) -> list[str]:
        responder = f"lmtp:inet:{settings.RESPONDER_HOST}:{settings.RESPONDER_PORT}"
        entries = transport_entries(settings.VACATION_ROUTING_DOMAIN, settings.VACATION_HANDOFF_PORT, responder)
        return [
            "# mailadmin: vacation copies reach the responder in two hops (transport table entries):",
            *(f"#   {domain}  {transport}" for domain, transport in entries),
            *master_cf_lines(settings.VACATION_ROUTING_DOMAIN, settings.VACATION_HANDOFF_PORT),
        ]

    def cf_files(self, ctx: ConfigContext) -> dict[str, list[str]]:
        return {}


config = HandoffConfig()
