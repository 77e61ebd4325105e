"""explain/decision.py: the decision alone, over table answers given here (no Postfix, no
database). tests/test_explain.py runs it on tables published by the real publisher."""

from datetime import UTC, datetime

from explain import decision
from explain.decision import Block, Difference, PublicationState, Routing, Tables

ROUTING = Routing("handoff.vacation.invalid", "vacation.invalid")


def tables(lines: dict[tuple[str, str], str], *extra_asked: str) -> Tables:
    """Answers for the keys given; every key of the addresses given (and of the lines') asked."""
    asked: set[tuple[str, str]] = set(lines)
    for address in extra_asked:
        asked |= decision.recipient_keys(address) | decision.sender_keys(address)
    return Tables(lines, frozenset(asked))


def test_a_disabled_alias_is_refused_by_its_recipient_access_line_before_the_catch_all() -> None:
    live = tables(
        {
            ("recipient_access", "leaked@catch.example"): "550 5.1.1 This address is disabled",
            ("mailbox_domains", "catch.example"): "OK",
            ("virtual", "@catch.example"): "owner@example.org",
        },
        "leaked@catch.example",
    )

    verdict = decision.mail_to("leaked@catch.example", live, ROUTING)

    deciding = [step for step in verdict.steps if step.decides]
    assert [(step.where, step.line) for step in deciding] == [
        ("recipient_access", "leaked@catch.example 550 5.1.1 This address is disabled")
    ]
    assert "550 5.1.1 This address is disabled" in verdict.outcome
    assert not any(step.where == "virtual" for step in verdict.steps)


def test_an_unknown_address_of_a_catch_all_domain_is_decided_by_the_catch_all_line() -> None:
    live = tables(
        {
            ("mailbox_domains", "catch.example"): "OK",
            ("virtual", "@catch.example"): "owner@example.org",
            ("mailbox_domains", "example.org"): "OK",
            ("mailboxes", "owner@example.org"): "example.org/owner/",
        },
        "nobody@catch.example",
        "owner@example.org",
    )

    verdict = decision.mail_to("nobody@catch.example", live, ROUTING)

    virtual = [step for step in verdict.steps if step.where == "virtual"]
    assert virtual[0].key == "@catch.example"
    assert virtual[0].line == "@catch.example owner@example.org"
    assert "catch-all" in virtual[0].says
    assert verdict.outcome == "Delivered to the mailbox of owner@example.org"


def test_a_mailbox_on_vacation_gets_a_copy_to_the_responder_and_keeps_its_mail() -> None:
    copy = "ann=example.org@handoff.vacation.invalid"
    live = tables(
        {
            ("mailbox_domains", "example.org"): "OK",
            ("virtual", "ann@example.org"): f"ann@example.org, {copy}",
            ("mailboxes", "ann@example.org"): "example.org/ann/",
            ("transport", "handoff.vacation.invalid"): "mailadmin-handoff:[127.0.0.1]:10026",
        },
        "ann@example.org",
        copy,
    )

    verdict = decision.mail_to("ann@example.org", live, ROUTING)

    transport = [step for step in verdict.steps if step.where == "transport"]
    assert transport[0].line == "handoff.vacation.invalid mailadmin-handoff:[127.0.0.1]:10026"
    assert "vacation copy" in transport[0].says
    assert verdict.outcome == "Delivered to the mailbox of ann@example.org and a copy to the vacation responder"


def test_an_alias_is_followed_to_its_owners_mailbox_and_that_mailboxs_own_line() -> None:
    live = tables(
        {
            ("alias_domains", "alias.example"): "OK",
            ("virtual", "shop@alias.example"): "ann@example.org",
            ("mailbox_domains", "example.org"): "OK",
            ("mailboxes", "ann@example.org"): "example.org/ann/",
        },
        "shop@alias.example",
        "ann@example.org",
    )

    verdict = decision.mail_to("shop@alias.example", live, ROUTING)

    assert [step.where for step in verdict.steps] == [
        "recipient_access",
        "alias_domains",
        "virtual",
        "virtual",
        "mailboxes",
    ]
    assert verdict.outcome == "Delivered to the mailbox of ann@example.org"


def test_further_keys_asks_for_the_targets_of_what_was_found() -> None:
    first = tables({("virtual", "shop@alias.example"): "ann@example.org"}, "shop@alias.example")

    wanted = decision.further_keys("shop@alias.example", first)

    assert ("mailboxes", "ann@example.org") in wanted
    assert ("virtual", "ann@example.org") in wanted
    assert not wanted & first.asked
    done = tables(dict(first.values), "shop@alias.example", "ann@example.org")
    assert decision.further_keys("shop@alias.example", done) == set()


def test_an_unknown_address_is_refused_as_the_table_it_misses_says() -> None:
    alias_domain = tables({("alias_domains", "alias.example"): "OK"}, "nope@alias.example")
    mailbox_domain = tables({("mailbox_domains", "example.org"): "OK"}, "nope@example.org")
    foreign = tables({}, "someone@elsewhere.example")

    assert (
        "User unknown in virtual alias table" in decision.mail_to("nope@alias.example", alias_domain, ROUTING).outcome
    )
    assert (
        "User unknown in virtual mailbox table" in decision.mail_to("nope@example.org", mailbox_domain, ROUTING).outcome
    )
    assert decision.mail_to("someone@elsewhere.example", foreign, ROUTING).outcome.startswith("Not ours")


def test_blocks_held_by_the_recipient_are_named_under_mail_to_it() -> None:
    live = tables(
        {("mailbox_domains", "example.org"): "OK", ("mailboxes", "ann@example.org"): "example.org/ann/"},
        "ann@example.org",
    )

    verdict = decision.mail_to("ann@example.org", live, ROUTING, [Block("account", "@spam.example", "ann")])

    assert any(step.key == "@spam.example" and "ann" in step.says for step in verdict.steps)
    assert "except from the blocked senders" in verdict.outcome


def test_a_suspended_sender_is_refused_by_the_ldap_flag_first_then_by_sender_access() -> None:
    refused = tables({("sender_access", "ann@example.org"): "REJECT suspended"}, "ann@example.org")
    ldap_line = "sender_block.cf: query_filter = (mail=%s)"

    by_flag = decision.mail_from("ann@example.org", refused, True, ldap_line, "suspended", [])
    by_table = decision.mail_from("ann@example.org", refused, False, ldap_line, "suspended", [])

    assert [(s.where, s.line) for s in by_flag.steps if s.decides] == [("LDAP sender check", ldap_line)]
    assert [(s.where, s.line) for s in by_table.steps if s.decides] == [
        ("sender_access", "ann@example.org REJECT suspended")
    ]
    assert by_table.outcome.startswith("Refused")


def test_an_organisation_block_refuses_a_sender_and_other_blocks_only_limit_it() -> None:
    clean = tables({}, "bad@spam.example")

    everyone = decision.mail_from("bad@spam.example", clean, None, "", "", [Block("organisation", "@spam.example", "")])
    some = decision.mail_from("bad@spam.example", clean, None, "", "", [Block("alias", "bad@spam.example", "a@b.c")])
    nothing = decision.mail_from("bad@spam.example", clean, None, "", "", [])

    assert "every address of the organisation" in everyone.outcome
    assert [s.key for s in everyone.steps if s.decides] == ["@spam.example"]
    assert some.outcome.startswith("Accepted, except")
    assert nothing.outcome.startswith("Accepted")


def test_live_and_expected_differences_say_pending_or_the_last_error() -> None:
    key = ("recipient_access", "leaked@alias.example")
    live = Tables({}, frozenset({key}))
    expected = Tables({key: "550 5.1.1 This address is disabled"}, frozenset({key}))
    since = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    pending = PublicationState(5, since, 4, since, "", None)
    failed = PublicationState(5, since, 4, since, "postmap: disk full", since)
    in_step = PublicationState(4, since, 4, since, "", None)

    found = decision.differences(live, expected)

    assert found == [Difference("recipient_access", "leaked@alias.example", None, "550 5.1.1 This address is disabled")]
    assert decision.publication_note(found, pending) == "Publishing pending since 2026-12-07 09:00:00 UTC."
    assert "postmap: disk full" in str(decision.publication_note(found, failed))
    assert "no publication is pending" in str(decision.publication_note(found, in_step))
    assert decision.publication_note([], in_step) is None
    assert decision.differences(live, live) == []


def test_the_ldap_flag_is_compared_with_the_recorded_suspension() -> None:
    assert decision.flag_difference("ann@example.org", True, True) is None
    assert decision.flag_difference("ann@example.org", None, None) is None
    assert decision.flag_difference("ann@example.org", False, True) == Difference(
        "LDAP sender-block flag", "ann@example.org", "False", "True"
    )
