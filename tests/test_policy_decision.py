"""The policy decision as a pure function: attributes + snapshot -> action and what to count."""

from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from activity.leaks import is_related, registrable_domain, site_domain
from policy import postfix
from policy.decision import DUNNO, Recipient, Snapshot, block_keys, decide
from policy.tally import Batch

ALIAS, OTHER_ALIAS, OWNER, OTHER_OWNER = 11, 12, 7, 8
SNAPSHOT = Snapshot(
    recipients={
        "twittercom@alias.example.org": Recipient(OWNER, ALIAS, "twitter.com"),
        "random1@alias.example.org": Recipient(OWNER, OTHER_ALIAS, None),
        "alice@example.org": Recipient(OWNER),
        "bob@example.org": Recipient(OTHER_OWNER),
    },
    organisation={"@spam.example": 1},
    accounts={OWNER: {"pest@nuisance.example": 2}},
    aliases={ALIAS: {"@unrelated-shop.example": 3}, OTHER_ALIAS: {"someone@shop.example": 4}},
    related_domains=("sendgrid.net",),
    reject_text="Delivery to this recipient is not permitted",
)


def rcpt(sender: str, recipient: str, **extra: str) -> dict[str, str]:
    return {
        "request": "smtpd_access_policy",
        "protocol_state": "RCPT",
        "sender": sender,
        "recipient": recipient,
        "client_address": "192.0.2.1",
        **extra,
    }


def run(attributes: dict[str, str], snapshot: Snapshot = SNAPSHOT):
    return decide(attributes, snapshot, is_related, registrable_domain)


def test_a_sender_blocked_on_the_alias_is_refused_with_550_5_7_1_for_that_alias_only() -> None:
    refused = run(rcpt("news@mailer.unrelated-shop.example", "twittercom@alias.example.org"))
    assert refused.action == "550 5.7.1 Delivery to this recipient is not permitted"
    assert refused.outcome is not None and refused.outcome.block_id == 3
    assert run(rcpt("news@mailer.unrelated-shop.example", "random1@alias.example.org")).action == DUNNO


def test_an_address_block_does_not_cover_another_address_at_the_same_domain() -> None:
    assert run(rcpt("someone@shop.example", "random1@alias.example.org")).action.startswith("550 5.7.1")
    assert run(rcpt("other@shop.example", "random1@alias.example.org")).action == DUNNO


def test_an_account_block_covers_every_alias_and_the_mailbox_of_that_person_only() -> None:
    for recipient in ("twittercom@alias.example.org", "random1@alias.example.org", "alice@example.org"):
        assert run(rcpt("Pest@Nuisance.example", recipient)).action.startswith("550 5.7.1"), recipient
    assert run(rcpt("pest@nuisance.example", "bob@example.org")).action == DUNNO


def test_an_organisation_block_covers_everyone_and_subdomains_but_not_lookalikes() -> None:
    for recipient in ("bob@example.org", "alice@example.org", "twittercom@alias.example.org"):
        assert run(rcpt("x@spam.example", recipient)).action.startswith("550"), recipient
        assert run(rcpt("x@deep.mx.spam.example", recipient)).action.startswith("550"), recipient
    assert run(rcpt("x@notspam.example", "bob@example.org")).action == DUNNO


def test_an_organisation_block_holds_for_addresses_the_snapshot_does_not_know() -> None:
    decision = run(rcpt("x@spam.example", "never-signed-in@example.org"))
    assert decision.action.startswith("550 5.7.1")
    assert decision.outcome is not None and decision.outcome.block_id == 1 and decision.outcome.alias_id is None


def test_addresses_that_are_not_ours_and_other_protocol_states_are_dunno_and_not_counted() -> None:
    assert run(rcpt("friend@fine.example", "someone@elsewhere.example")).outcome is None
    data = run(rcpt("x@spam.example", "bob@example.org", protocol_state="DATA"))
    assert data.action == DUNNO and data.outcome is None
    assert run({"request": "junk", "recipient": "bob@example.org"}).action == DUNNO


def test_the_null_sender_is_accepted_and_counted_without_a_domain() -> None:
    decision = run(rcpt("", "twittercom@alias.example.org"))
    assert decision.action == DUNNO and decision.outcome is not None
    assert decision.outcome.sender_domain == "" and decision.outcome.leak_domain is None


def test_an_unrelated_sender_flags_a_per_site_alias_naming_its_registrable_domain() -> None:
    decision = run(rcpt("promo@mailer.other-shop.example", "twittercom@alias.example.org"))
    assert decision.action == DUNNO
    assert decision.outcome is not None and decision.outcome.leak_domain == "other-shop.example"


def test_the_site_itself_mail_services_and_already_flagged_domains_raise_no_flag() -> None:
    for sender in ("info@twitter.com", "x@mail.notify.twitter.com", "bounce@em123.sendgrid.net"):
        outcome = run(rcpt(sender, "twittercom@alias.example.org")).outcome
        assert outcome is not None and outcome.leak_domain is None, sender
    flagged = Snapshot(recipients=SNAPSHOT.recipients, flagged=frozenset({(ALIAS, "other-shop.example")}))
    outcome = run(rcpt("promo@mailer.other-shop.example", "twittercom@alias.example.org"), flagged).outcome
    assert outcome is not None and outcome.leak_domain is None


def test_aliases_without_a_site_are_never_flagged() -> None:
    outcome = run(rcpt("promo@anything.example", "random1@alias.example.org")).outcome
    assert outcome is not None and outcome.leak_domain is None


@pytest.mark.parametrize(
    ("sender", "keys"),
    [
        ("a@b.c", ["a@b.c", "@b.c", "@c"]),
        ("", []),
        ("no-at-sign", []),
        ("@domain.only", []),
        ("local@", []),
    ],
)
def test_block_keys_are_the_address_and_each_parent_domain(sender: str, keys: list[str]) -> None:
    assert block_keys(sender) == keys


def test_registrable_domains_follow_the_public_suffix_list() -> None:
    assert registrable_domain("mailer.shop.co.uk") == "shop.co.uk"
    assert registrable_domain("co.uk") is None
    assert registrable_domain("x.user.github.io") == "user.github.io"
    assert site_domain("https://www.twitter.com/signup") == "twitter.com"
    assert site_domain("twitter.com") == "twitter.com"


def test_counts_add_up_per_alias_and_day_and_remember_the_latest_sender_per_domain() -> None:
    batch = Batch()
    at = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    for sender in ("a@shop.example", "b@shop.example", "x@spam.example"):
        decision = run(rcpt(sender, "random1@alias.example.org"))
        assert decision.outcome is not None
        batch.add(decision.outcome, at)
    blocked = run(rcpt("x@spam.example", "alice@example.org")).outcome
    assert blocked is not None
    batch.add(blocked, at)
    daily = batch.daily[(OTHER_ALIAS, at.date())]
    assert (daily.accepted, daily.refused) == (2, 1)
    assert batch.senders[(OTHER_ALIAS, "shop.example")].last_sender == "b@shop.example"
    assert batch.stopped == {1: (2, at)}  # the mailbox refusal counts for the block, not an alias


def test_a_batch_that_failed_to_write_keeps_its_counts_in_front_of_newer_ones() -> None:
    first, later = Batch(), Batch()
    at = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    outcome = run(rcpt("a@shop.example", "random1@alias.example.org")).outcome
    assert outcome is not None
    first.add(outcome, at)
    later.add(outcome, at.replace(minute=5))
    first.merge(later)
    assert first.daily[(OTHER_ALIAS, at.date())].accepted == 2
    assert first.daily[(OTHER_ALIAS, at.date())].last_at == at.replace(minute=5)


def test_the_shipped_postfix_snippet_holds_the_generated_lines_for_the_default_settings() -> None:
    shipped = (Path(__file__).resolve().parent.parent / "deploy" / "postfix" / "main.cf.policy").read_text()
    for line in postfix.main_cf_lines(5, "DUNNO"):
        assert line in shipped.splitlines()
    assert "#   " + postfix.recipient_restrictions("127.0.0.1", 10040)[0] in shipped.splitlines()


def test_postfix_config_prints_the_policy_check_between_the_alias_refusal_and_permit_mynetworks() -> None:
    out = StringIO()
    call_command("postfix_config", "--part", "main.cf", stdout=out)
    lines = [line.strip() for line in out.getvalue().splitlines()]
    check = f"check_policy_service inet:{settings.POLICY_HOST}:{settings.POLICY_PORT},"
    assert lines.index(check) == lines.index("permit_mynetworks,") - 1
    assert lines[lines.index(check) - 1].startswith("check_recipient_access ")
    assert f"smtpd_policy_service_default_action = {settings.POLICY_DEFAULT_ACTION}" in lines
