"""The Postfix lines of the policy service, as plain functions of the settings' values (no
Django import): `manage.py postfix_config` prints them and the private Postfix in
localservices/ writes the same."""


def recipient_restrictions(host: str, port: int) -> list[str]:
    """Entries for smtpd_recipient_restrictions, after the refusal of disabled aliases and
    before permit_mynetworks (so mail from any client is decided)."""
    return [f"    check_policy_service inet:{host}:{port},"]


def main_cf_lines(timeout: int, default_action: str) -> list[str]:
    return [
        "# mailadmin policy service (manage.py run_policy; docs/policy.md): sender blocks and alias",
        "# activity, decided at RCPT. While it is down or slower than the timeout, Postfix takes the",
        "# default action: DUNNO lets mail through uncounted and unblocked (fail-open); a 4xx reply",
        "# defers it instead (fail-closed). One try: a refused connection costs no retry delay.",
        f"smtpd_policy_service_timeout = {timeout}s",
        f"smtpd_policy_service_default_action = {default_action}",
        "smtpd_policy_service_try_limit = 1",
    ]
