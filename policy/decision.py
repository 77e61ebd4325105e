"""The decision for one RCPT: a pure function of the request's attributes and a snapshot of the
aliases and blocks (policy/snapshot.py builds it; nothing here touches a database or a socket)."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

DUNNO = "DUNNO"


@dataclass(frozen=True)
class Recipient:
    owner_id: int
    alias_id: int | None = None  # None: the owner's mailbox
    site_domain: str | None = None  # registrable domain of a per-site alias's site


# A set of blocks: "address" or "@domain" -> the block's id.
BlockSet = Mapping[str, int]


@dataclass(frozen=True)
class Snapshot:
    recipients: Mapping[str, Recipient] = field(default_factory=dict)  # lower-case address ->
    organisation: BlockSet = field(default_factory=dict)
    accounts: Mapping[int, BlockSet] = field(default_factory=dict)  # owner id ->
    aliases: Mapping[int, BlockSet] = field(default_factory=dict)  # alias id ->
    flagged: frozenset[tuple[int, str]] = frozenset()  # (alias id, registrable domain) already flagged
    related_domains: tuple[str, ...] = ()
    reject_text: str = "Delivery to this recipient is not permitted"


@dataclass(frozen=True)
class Outcome:
    """What a decision means for the counts (policy/tally.py)."""

    alias_id: int | None
    owner_id: int | None  # None: a recipient we do not track, refused by an organisation-wide block
    sender: str  # lower-case; "" for the null sender
    sender_domain: str
    block_id: int | None = None  # set when refused
    leak_domain: str | None = None  # registrable domain to flag the alias for


@dataclass(frozen=True)
class Decision:
    action: str
    outcome: Outcome | None = None  # None: not one of our addresses, or not a RCPT


def block_keys(sender: str) -> list[str]:
    """The keys a sender matches: its address, then its domain and each parent domain."""
    local, at, domain = sender.rpartition("@")
    if not at or not local or not domain:
        return []
    labels = domain.split(".")
    return [sender] + ["@" + ".".join(labels[i:]) for i in range(len(labels))]


def _first_block(keys: list[str], *sets: BlockSet | None) -> int | None:
    for blocks in sets:
        if not blocks:
            continue
        for key in keys:
            found = blocks.get(key)
            if found is not None:
                return found
    return None


def decide(
    attributes: Mapping[str, str],
    snapshot: Snapshot,
    is_related: Callable[[str, str, tuple[str, ...]], bool],
    registrable: Callable[[str], str | None],
) -> Decision:
    if attributes.get("request") != "smtpd_access_policy" or attributes.get("protocol_state") != "RCPT":
        return Decision(DUNNO)
    recipient = snapshot.recipients.get(attributes.get("recipient", "").lower())
    sender = attributes.get("sender", "").lower()
    sender_domain = sender.rpartition("@")[2] if "@" in sender else ""
    keys = block_keys(sender)
    # Organisation-wide blocks hold for every recipient, also people who never signed in here.
    block = _first_block(keys, snapshot.organisation)
    if recipient is None:
        if block is None:
            return Decision(DUNNO)
        return Decision(f"550 5.7.1 {snapshot.reject_text}", Outcome(None, None, sender, sender_domain, block))
    if block is None:
        block = _first_block(
            keys,
            snapshot.accounts.get(recipient.owner_id),
            snapshot.aliases.get(recipient.alias_id) if recipient.alias_id is not None else None,
        )
    outcome = Outcome(recipient.alias_id, recipient.owner_id, sender, sender_domain, block_id=block)
    if block is not None:
        return Decision(f"550 5.7.1 {snapshot.reject_text}", outcome)
    if recipient.alias_id is not None and recipient.site_domain and sender_domain:
        if not is_related(sender_domain, recipient.site_domain, snapshot.related_domains):
            leak = registrable(sender_domain) or sender_domain
            if (recipient.alias_id, leak) not in snapshot.flagged:
                outcome = Outcome(recipient.alias_id, recipient.owner_id, sender, sender_domain, leak_domain=leak)
    return Decision(DUNNO, outcome)
