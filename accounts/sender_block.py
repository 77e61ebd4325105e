"""Postfix configuration for the sender block: the ldap: lookup tables that read the
sender-block flag live, and the restriction lines that use them (part of the
configuration postfix/config.py generates).

- Port 25 / any smtpd: `check_sender_access` on the envelope sender, first the LDAP flag
  (mailboxes, live) then the published sender_access table (aliases, and sites without
  postfix-ldap).
- Submission with SASL: `check_sasl_access` on the login blocks a suspended user whatever
  MAIL FROM they give, and `reject_sender_login_mismatch` lets each login send as its own
  mailbox (live from LDAP, then the published sender_login table) and its live aliases (the
  published table) and nothing else: a switched-off, expired or deleted alias is in no table.
"""

from django.conf import settings

from postfix.features import ConfigContext, Restriction

PASSWORD_PLACEHOLDER = "<the postfix service account's password>"
# The submission service's recipient restrictions, a list other features add to.
SUBMISSION_RECIPIENTS = "mailadmin_submission_recipient_restrictions"


def reject_format() -> str:
    # result_format expands %s, %u, ...; a literal % must be doubled.
    return f"REJECT {settings.SUSPENSION_REJECT_TEXT.replace('%', '%%')}"


def _ldap_cf(query_filter: str, result: list[str], bind_pw: str) -> list[str]:
    return [
        f"server_host = {settings.LDAP_URI}",
        "version = 3",
        *(["start_tls = yes"] if settings.POSTFIX_LDAP_START_TLS else []),
        "bind = yes",
        f"bind_dn = cn=postfix,ou=services,{settings.LDAP_BASE_DN}",
        f"bind_pw = {bind_pw}",
        f"search_base = {settings.LDAP_PEOPLE_DN}",
        f"query_filter = {query_filter}",
        *result,
    ]


def sender_block_cf_lines(bind_pw: str = PASSWORD_PLACEHOLDER) -> list[str]:
    """check_sender_access: the envelope sender is a suspended user's mailbox."""
    attr = settings.LDAP_SENDER_BLOCK_ATTR
    return _ldap_cf(
        f"(&(objectClass=mailAccount)(mail=%s)({attr}=TRUE))",
        ["result_attribute = mail", f"result_format = {reject_format()}"],
        bind_pw,
    )


def sasl_sender_block_cf_lines(bind_pw: str = PASSWORD_PLACEHOLDER) -> list[str]:
    """check_sasl_access: the SASL login (uid, or the mail address where logins are
    addresses) belongs to a suspended user."""
    attr = settings.LDAP_SENDER_BLOCK_ATTR
    return _ldap_cf(
        f"(&(objectClass=mailAccount)(|(uid=%s)(mail=%s))({attr}=TRUE))",
        ["result_attribute = uid", f"result_format = {reject_format()}"],
        bind_pw,
    )


def sender_login_maps_cf_lines(bind_pw: str = PASSWORD_PLACEHOLDER) -> list[str]:
    """smtpd_sender_login_maps: which logins own a mailbox address (for
    reject_sender_login_mismatch): the uid, or the address where logins are addresses."""
    return _ldap_cf("(&(objectClass=mailAccount)(mail=%s))", ["result_attribute = uid, mail"], bind_pw)


class SenderBlockConfig:
    """The sender block's part of the generated configuration (postfix/config.py)."""

    def main_cf(self, ctx: ConfigContext) -> list[str]:
        lines = [
            "# mailadmin: suspended senders. Port 25: the live LDAP flag (mailboxes), then the",
            "# published sender_access table (mailboxes and every alias of a suspended user).",
            "smtpd_delay_reject = no",
        ]
        if "submission" in ctx.services:
            lines += [
                "# Submission (SASL): refuse a suspended login whatever MAIL FROM it uses, and refuse",
                "# MAIL FROM addresses not owned by the login: its mailbox (LDAP, live) and its live",
                "# aliases (the published sender_login table) only (the submission service in master.cf).",
                f"mailadmin_sender_login_maps = ldap:{ctx.config_dir / 'sender_login_maps.cf'},"
                f" {ctx.table('sender_login')}",
            ]
        return lines

    def restrictions(self, ctx: ConfigContext) -> list[Restriction]:
        block = f"check_sender_access ldap:{ctx.config_dir / 'sender_block.cf'}"
        items = [Restriction("smtpd_sender_restrictions", block, 10)]
        if "submission" in ctx.services:
            submission = "mailadmin_submission_sender_restrictions"
            items += [
                Restriction(submission, f"check_sasl_access ldap:{ctx.config_dir / 'sasl_sender_block.cf'}", 10),
                Restriction(submission, "reject_sender_login_mismatch", 20),
                Restriction(submission, block, 30),
                # Its recipients: other features' checks (the policy service's count) come first.
                Restriction(SUBMISSION_RECIPIENTS, "permit_sasl_authenticated", 50),
                Restriction(SUBMISSION_RECIPIENTS, "reject", 60),
            ]
        return items

    def master_cf(self, ctx: ConfigContext) -> list[str]:
        if "submission" not in ctx.services:
            return []
        return [
            "# mailadmin: submission with the sender block by login (SASL via Dovecot)",
            "submission inet n       -       y       -       -       smtpd",
            "  -o syslog_name=postfix/submission",
            "  -o smtpd_tls_security_level=encrypt",
            "  -o smtpd_sasl_auth_enable=yes",
            "  -o smtpd_sasl_type=dovecot",
            "  -o smtpd_sasl_path=private/auth",
            "  -o smtpd_sender_login_maps=$mailadmin_sender_login_maps",
            "  -o smtpd_sender_restrictions=$mailadmin_submission_sender_restrictions",
            f"  -o smtpd_recipient_restrictions=${SUBMISSION_RECIPIENTS}",
        ]

    def cf_files(self, ctx: ConfigContext) -> dict[str, list[str]]:
        files = {"sender_block.cf": sender_block_cf_lines(ctx.ldap_password)}
        if "submission" in ctx.services:
            files["sasl_sender_block.cf"] = sasl_sender_block_cf_lines(ctx.ldap_password)
            files["sender_login_maps.cf"] = sender_login_maps_cf_lines(ctx.ldap_password)
        return files


config = SenderBlockConfig()
