"""Postfix configuration for the sender block: the ldap: lookup tables that read the
sender-block flag live, and the restriction lines that use them (printed by
`manage.py postfix_config`; copies with comments in deploy/postfix/).

- Port 25 / any smtpd: `check_sender_access` on the envelope sender, first the LDAP flag
  (mailboxes, live) then the published hash: sender_access map (aliases, and sites without
  postfix-ldap).
- Submission with SASL: `check_sasl_access` on the login blocks a suspended user whatever
  MAIL FROM they give, and `reject_sender_login_mismatch` keeps them from using someone
  else's mailbox address.
"""

from pathlib import Path

from django.conf import settings

PASSWORD_PLACEHOLDER = "<the postfix service account's password>"


def reject_format() -> str:
    # result_format expands %s, %u, ...; a literal % must be doubled.
    return f"REJECT {settings.SUSPENSION_REJECT_TEXT.replace('%', '%%')}"


def _cf_path(name: str) -> Path:
    return Path(settings.POSTFIX_CONFIG_DIR) / name


def _ldap_cf(name: str, query_filter: str, result: list[str], bind_pw: str) -> list[str]:
    return [
        f"# {_cf_path(name)} (mode 0600: it holds a password)",
        f"server_host = {settings.LDAP_URI}",
        "version = 3",
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
        "sender_block.cf",
        f"(&(objectClass=mailAccount)(mail=%s)({attr}=TRUE))",
        ["result_attribute = mail", f"result_format = {reject_format()}"],
        bind_pw,
    )


def sasl_sender_block_cf_lines(bind_pw: str = PASSWORD_PLACEHOLDER) -> list[str]:
    """check_sasl_access: the SASL login (uid, or the mail address where logins are
    addresses) belongs to a suspended user."""
    attr = settings.LDAP_SENDER_BLOCK_ATTR
    return _ldap_cf(
        "sasl_sender_block.cf",
        f"(&(objectClass=mailAccount)(|(uid=%s)(mail=%s))({attr}=TRUE))",
        ["result_attribute = uid", f"result_format = {reject_format()}"],
        bind_pw,
    )


def sender_login_maps_cf_lines(bind_pw: str = PASSWORD_PLACEHOLDER) -> list[str]:
    """smtpd_sender_login_maps: which login owns a mailbox address (for
    reject_sender_login_mismatch). Use result_attribute = mail where logins are addresses."""
    return _ldap_cf(
        "sender_login_maps.cf",
        "(&(objectClass=mailAccount)(mail=%s))",
        ["result_attribute = uid"],
        bind_pw,
    )


def main_cf_lines() -> list[str]:
    maps = Path(settings.POSTFIX_MAP_DIR)
    return [
        "# mailadmin: suspended senders. Port 25: the live LDAP flag (mailboxes), then the",
        "# published hash: table (mailboxes and every alias of a suspended user).",
        "smtpd_delay_reject = no",
        "smtpd_sender_restrictions =",
        f"    check_sender_access ldap:{_cf_path('sender_block.cf')},",
        f"    check_sender_access hash:{maps / 'sender_access'}",
        "# Submission (SASL): refuse a suspended login whatever MAIL FROM it uses, and refuse",
        "# MAIL FROM addresses owned by another login. Used by the submission service in master.cf.",
        f"mailadmin_sender_login_maps = ldap:{_cf_path('sender_login_maps.cf')}",
        "mailadmin_submission_sender_restrictions =",
        f"    check_sasl_access ldap:{_cf_path('sasl_sender_block.cf')},",
        "    reject_sender_login_mismatch,",
        f"    check_sender_access ldap:{_cf_path('sender_block.cf')},",
        f"    check_sender_access hash:{maps / 'sender_access'}",
    ]


def master_cf_lines() -> list[str]:
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
        "  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject",
    ]


def extra_files() -> list[str]:
    return [
        *sender_block_cf_lines(),
        "",
        *sasl_sender_block_cf_lines(),
        "",
        *sender_login_maps_cf_lines(),
    ]
