"""What Postfix does with mail to and from one address: a pure function of what the tables
answer (the live ones, and the same keys rendered from the database), the directory's
sender-block flag and the policy service's blocks. Nothing here touches a process, a file,
the directory or the database: explain/services.py gathers the facts.

The order is Postfix's: for mail TO an address, smtpd_recipient_restrictions (the refusal
table, then the policy service's blocks), whether the domain is one of ours, then the cleanup
daemon's virtual alias expansion (the exact address, else the @domain catch-all, each result
looked up again; a vacation copy is one more target), then the transport and the mailbox of
each final address. For mail FROM it: smtpd_sender_restrictions (the LDAP flag, then the
sender_access table), then at RCPT the policy service's blocks.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

# Postfix's own limit is virtual_alias_recursion_limit (1000); ours never nest more than a few.
MAX_DEPTH = 5

Key = tuple[str, str]  # (table, key)


@dataclass(frozen=True)
class Tables:
    """What some tables answer: (table, key) -> value for the keys found; `asked` holds every
    key looked up, so a key that is missing is told apart from one not looked up."""

    values: Mapping[Key, str] = field(default_factory=dict)
    asked: frozenset[Key] = frozenset()

    def get(self, table: str, key: str) -> str | None:
        return self.values.get((table, key))


@dataclass(frozen=True)
class Routing:
    """The out-of-office routing names (outofoffice/routing.py): a virtual target in the
    hand-off domain is a vacation copy."""

    handoff_domain: str
    routing_domain: str


@dataclass(frozen=True)
class Block:
    """A sender block of the policy service that matches (activity.models.SenderBlock)."""

    scope: str  # "organisation", "account", "alias"
    key: str  # the matching sender key: an address or "@domain"
    whose: str  # whose block: "" for organisation-wide, else the owner's uid or the alias


@dataclass(frozen=True)
class Step:
    """One look-up: where, which key, the line it found (None: no line), what that means."""

    where: str
    key: str
    line: str | None
    says: str
    decides: bool = False


@dataclass(frozen=True)
class Verdict:
    steps: list[Step]
    outcome: str


@dataclass(frozen=True)
class Difference:
    where: str
    key: str
    live: str | None
    expected: str | None


@dataclass(frozen=True)
class PublicationState:
    """This mail host's publication (postfix.models.MapPublication) and the latest request."""

    requested: int
    requested_at: datetime | None
    published: int
    last_success_at: datetime | None
    last_error: str
    last_error_at: datetime | None


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def recipient_keys(address: str) -> set[Key]:
    """The keys Postfix looks up for one recipient address (also for each virtual target)."""
    domain = domain_of(address)
    return {
        ("recipient_access", address),
        ("mailbox_domains", domain),
        ("alias_domains", domain),
        ("virtual", address),
        ("virtual", f"@{domain}"),
        ("transport", domain),
        ("mailboxes", address),
    }


def sender_keys(address: str) -> set[Key]:
    return {("sender_access", address), ("sender_login", address)}


def _virtual(address: str, tables: Tables) -> tuple[str, str, list[str]] | None:
    """(key, value, targets) of the virtual line for an address: exact, else the catch-all."""
    for key in (address, f"@{domain_of(address)}"):
        value = tables.get("virtual", key)
        if value is not None:
            return key, value, [target.strip() for target in value.split(",") if target.strip()]
    return None


def _targets(address: str, tables: Tables, depth: int = 0) -> set[str]:
    found = _virtual(address, tables)
    if found is None or depth >= MAX_DEPTH:
        return {address}
    targets = set()
    for target in found[2]:
        targets |= {target} if target == address else _targets(target, tables, depth + 1) | {target}
    return targets


def further_keys(address: str, tables: Tables) -> set[Key]:
    """Keys not yet asked that the virtual expansion of the address now needs."""
    wanted = recipient_keys(address) | sender_keys(address)
    for target in _targets(address, tables) - {address}:
        # check_recipient_access sees the address given at RCPT only, never a virtual target.
        wanted |= recipient_keys(target) - {("recipient_access", target)}
    return wanted - tables.asked


def _line(key: str, value: str | None) -> str | None:
    return None if value is None else f"{key} {value}"


def _final(address: str, tables: Tables, routing: Routing, steps: list[Step], depth: int) -> list[str]:
    """Steps for one address after the recipient checks; returns where its mail ends up."""
    indent = "  " * depth
    domain = domain_of(address)
    if domain == routing.handoff_domain:
        transport = tables.get("transport", domain)
        steps.append(
            Step(
                "transport",
                domain,
                _line(domain, transport),
                f"{indent}vacation copy: handed to the out-of-office responder"
                if transport
                else f"{indent}vacation copy, but no transport for the hand-off domain: the copy would be deferred",
            )
        )
        return ["a copy to the vacation responder"]
    found = _virtual(address, tables) if depth < MAX_DEPTH else None
    if found is not None:
        key, value, targets = found
        kind = "exact address" if key == address else "catch-all of the domain"
        steps.append(Step("virtual", key, _line(key, value), f"{indent}{kind}: mail for {address} goes to {value}"))
        ends: list[str] = []
        for target in targets:
            if target == address:
                ends += _delivery(address, tables, steps, indent)
            else:
                ends += _final(target, tables, routing, steps, depth + 1)
        return ends
    if depth:
        steps.append(Step("virtual", address, None, f"{indent}{address} is not aliased further"))
    return _delivery(address, tables, steps, indent)


def _delivery(address: str, tables: Tables, steps: list[Step], indent: str) -> list[str]:
    domain = domain_of(address)
    transport = tables.get("transport", domain)
    if transport:
        steps.append(Step("transport", domain, _line(domain, transport), f"{indent}handed to {transport}"))
        return [f"{address} via {transport}"]
    if ("mailbox_domains", domain) in tables.asked and tables.get("mailbox_domains", domain) is None:
        if tables.get("alias_domains", domain) is not None:
            steps.append(Step("virtual", address, None, f"{indent}{address}: no alias in an alias domain"))
            return [f"{address}: refused as unknown (an alias domain without this alias)"]
        steps.append(Step("mailbox_domains", domain, None, f"{indent}{domain} is not ours: relayed by DNS"))
        return [f"{address} (another mail server)"]
    mailbox = tables.get("mailboxes", address)
    steps.append(
        Step(
            "mailboxes",
            address,
            _line(address, mailbox),
            f"{indent}delivered to the mailbox {mailbox}" if mailbox else f"{indent}{address} has no mailbox",
        )
    )
    return [f"the mailbox of {address}"] if mailbox else [f"{address}: no such mailbox (bounced)"]


def mail_to(address: str, tables: Tables, routing: Routing, blocks: Iterable[Block] = ()) -> Verdict:
    steps: list[Step] = []
    domain = domain_of(address)
    refusal = tables.get("recipient_access", address)
    if refusal is not None:
        steps.append(Step("recipient_access", address, _line(address, refusal), f"refused at RCPT: {refusal}", True))
        return Verdict(steps, f"Refused before any catch-all is consulted: {refusal}")
    steps.append(Step("recipient_access", address, None, "not refused"))
    own = [Step(f"policy service ({b.scope} block)", b.key, None, _block_text(b)) for b in blocks]
    steps += own
    mailbox_domain = tables.get("mailbox_domains", domain)
    alias_domain = tables.get("alias_domains", domain)
    if mailbox_domain is None and alias_domain is None:
        steps.append(Step("mailbox_domains, alias_domains", domain, None, f"{domain} is not a domain of this server"))
        return Verdict(
            steps,
            f"Not ours: {domain} is no domain of this server. Postfix relays such mail only for its own clients "
            "(permit_mynetworks, permit_sasl_authenticated); anyone else gets 554 Relay access denied.",
        )
    table = "mailbox_domains" if mailbox_domain is not None else "alias_domains"
    steps.append(Step(table, domain, _line(domain, mailbox_domain or alias_domain), f"{domain} is ours"))
    if _virtual(address, tables) is None and mailbox_domain is None:
        steps.append(Step("virtual", address, None, "no alias and no catch-all", True))
        return Verdict(steps, "Refused at RCPT: 550 5.1.1 User unknown in virtual alias table")
    if _virtual(address, tables) is None and tables.get("mailboxes", address) is None:
        steps.append(Step("virtual", address, None, "no alias and no catch-all"))
        steps.append(Step("mailboxes", address, None, "no mailbox", True))
        return Verdict(steps, "Refused at RCPT: 550 5.1.1 User unknown in virtual mailbox table")
    ends = _final(address, tables, routing, steps, 0)
    if own:
        return Verdict(steps, f"Delivered to {_joined(ends)}, except from the blocked senders above")
    return Verdict(steps, f"Delivered to {_joined(ends)}")


def _joined(items: list[str]) -> str:
    unique = list(dict.fromkeys(items))
    return ", ".join(unique[:-1]) + f" and {unique[-1]}" if len(unique) > 1 else unique[0]


def _block_text(block: Block) -> str:
    if block.scope == "organisation":
        return f"mail from {block.key} is refused at RCPT to every address of the organisation"
    if block.scope == "account":
        return f"mail from {block.key} is refused at RCPT to every address of {block.whose}"
    return f"mail from {block.key} is refused at RCPT to the alias {block.whose}"


def mail_from(
    address: str, tables: Tables, ldap_flag: bool | None, ldap_line: str, reject_text: str, blocks: Iterable[Block]
) -> Verdict:
    """ldap_flag: the sender-block flag of the directory entry with this mail address (None:
    no such entry); ldap_line: the lookup's query_filter, to name it."""
    steps: list[Step] = []
    if ldap_flag:
        steps.append(Step("LDAP sender check", address, ldap_line, f"refused at MAIL FROM: {reject_text}", True))
        return Verdict(steps, f"Refused when it is the envelope sender: {reject_text} (the directory's flag)")
    says = "the directory entry's sender-block flag is not set" if ldap_flag is False else "no directory entry"
    steps.append(Step("LDAP sender check", address, None, says))
    refusal = tables.get("sender_access", address)
    if refusal is not None:
        steps.append(Step("sender_access", address, _line(address, refusal), f"refused at MAIL FROM: {refusal}", True))
        return Verdict(steps, f"Refused when it is the envelope sender: {refusal}")
    steps.append(Step("sender_access", address, None, "not refused"))
    if ("sender_login", address) in tables.asked:
        logins = tables.get("sender_login", address)
        says = (
            f"on submission, the logins {logins} may send as it (reject_sender_login_mismatch)"
            if logins
            else "on submission, no login of this table may send as it (the directory's mailbox owner still may)"
        )
        steps.append(Step("sender_login", address, _line(address, logins), says))
    blocks = list(blocks)
    steps += [
        Step(f"policy service ({b.scope} block)", b.key, None, _block_text(b), b.scope == "organisation")
        for b in blocks
    ]
    if any(block.scope == "organisation" for block in blocks):
        return Verdict(steps, "Refused at RCPT to every address of the organisation (an organisation-wide block)")
    if blocks:
        return Verdict(steps, "Accepted, except to the people and aliases that block it (above)")
    return Verdict(steps, "Accepted: nothing here refuses mail from it")


def differences(live: Tables, expected: Tables) -> list[Difference]:
    """Where the live tables do not answer what the database says they should."""
    found = []
    for where, key in sorted(live.asked & expected.asked):
        if live.get(where, key) != expected.get(where, key):
            found.append(Difference(where, key, live.get(where, key), expected.get(where, key)))
    return found


def flag_difference(address: str, ldap_flag: bool | None, suspended: bool | None) -> Difference | None:
    """The directory's sender-block flag against the suspension recorded in the database
    (None: no one's mailbox, nothing to compare)."""
    if ldap_flag is None or suspended is None or ldap_flag == suspended:
        return None
    return Difference("LDAP sender-block flag", address, str(ldap_flag), str(suspended))


def publication_note(found: list[Difference], state: PublicationState) -> str | None:
    """Why the live tables differ from the database, when they do (or that a publication is
    pending even though these keys agree)."""
    pending = state.requested > state.published
    tables_differ = any(not difference.where.startswith("LDAP") for difference in found)
    if state.last_error and (tables_differ or pending):
        return f"The last publication failed ({_when(state.last_error_at)}): {state.last_error}"
    if pending and state.requested_at is not None:
        return f"Publishing pending since {_when(state.requested_at)}."
    if tables_differ:
        return (
            "The live tables differ from the database and no publication is pending: "
            "a change by the passing of time (an expiry) is published by the next reconcile, or run "
            "manage.py publish_maps."
        )
    if found:
        return "The directory's flag differs from the suspension recorded here: the suspension sweep puts it right."
    return None


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if moment else "at an unknown time"
