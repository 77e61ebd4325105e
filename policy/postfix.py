"""The policy service's part of the generated Postfix configuration (postfix/config.py): its
check in smtpd_recipient_restrictions and the main.cf lines that say what Postfix does when the
service is down. `manage.py postfix_config`, the private Postfix and deploy/ print the same."""

from django.conf import settings

from accounts.sender_block import SUBMISSION_RECIPIENTS
from postfix.features import ConfigContext, Restriction

# After the refusal of switched-off aliases (10) and before permit_mynetworks (50), so mail from
# any client is decided.
POSITION = 40


def policy_check(host: str, port: int) -> str:
    return f"check_policy_service inet:{host}:{port}"


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


class PolicyConfig:
    def main_cf(self, ctx: ConfigContext) -> list[str]:
        return main_cf_lines(settings.POLICY_TIMEOUT, settings.POLICY_DEFAULT_ACTION)

    def restrictions(self, ctx: ConfigContext) -> list[Restriction]:
        check = policy_check(settings.POLICY_HOST, settings.POLICY_PORT)
        items = [Restriction("smtpd_recipient_restrictions", check, POSITION)]
        if "submission" in ctx.services:
            # Mail sent with a login is counted against the outbound limits too.
            items.append(Restriction(SUBMISSION_RECIPIENTS, check, POSITION))
        return items

    def master_cf(self, ctx: ConfigContext) -> list[str]:
        return []

    def cf_files(self, ctx: ConfigContext) -> dict[str, list[str]]:
        return {}


config = PolicyConfig()
