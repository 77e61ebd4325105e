"""When a vacation reply goes out (RFC 3834, RFC 5230, as Pigeonhole does it).

Pure functions over parsed facts: the responder and the "would X get a reply?" preview
both call `decide`, so they cannot disagree.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.parser import BytesParser
from email.policy import compat32
from email.utils import getaddresses

# Our own replies carry this header; a message that has it is one of ours coming back.
LOOP_HEADER = "X-Mailadmin-Vacation"
MAX_HEADER_BYTES = 256 * 1024

# Local parts of senders that are machines or lists (lower-case).
SYSTEM_LOCAL_PARTS = re.compile(
    r"""^(
        mailer-daemon | postmaster | listserv | majordomo | mailman | bounce[s]?
      | owner-.* | .*-owner | .*-request | .*-bounces?
      | no[-_.]?reply.* | .*[-_.]no[-_.]?reply | do[-_.]?not[-_.]?reply.* | donotreply.*
    )\Z""",
    re.VERBOSE,
)
# Envelope senders a reply may go to: plain ASCII, no quoting, a dotted domain.
ADDRESS_PATTERN = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\Z")
RECIPIENT_HEADERS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")


@dataclass(frozen=True)
class Incoming:
    """What the rules need of one message: the envelope sender and the decoded header lines."""

    sender: str
    headers: tuple[tuple[str, str], ...]

    def values(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    def first(self, name: str) -> str:
        found = self.values(name)
        return found[0].strip() if found else ""


@dataclass(frozen=True)
class Recipient:
    """The user a copy was meant for, and their vacation settings at this moment."""

    address: str
    enabled: bool
    starts_at: datetime | None
    ends_at: datetime | None
    interval: timedelta
    # Every address the user owns (mailbox and all aliases): mail from these is the user's own.
    own_addresses: frozenset[str]
    # Addresses for which mail may be answered: the mailbox and aliases opted in to replies.
    reply_addresses: frozenset[str]
    # When this sender last got this reply, if ever.
    last_reply_at: datetime | None
    # Why the user may not send now (suspended in LDAP or by a suspension row), or "".
    suspended: str = ""
    # Replies this user sent in the last hour and day, and all users' in the last hour.
    replies_last_hour: int = 0
    replies_last_day: int = 0
    all_replies_last_hour: int = 0


@dataclass(frozen=True)
class Limits:
    """What the caps and the Authentication-Results check compare with (from settings)."""

    per_user_hour: int
    per_user_day: int
    all_users_hour: int
    # Our own authserv-id (RFC 8601): only Authentication-Results headers that carry it are
    # ours; anybody can add one with another id. "" trusts none.
    authserv_id: str


NO_LIMITS = Limits(per_user_hour=10**9, per_user_day=10**9, all_users_hour=10**9, authserv_id="")


@dataclass(frozen=True)
class Decision:
    reply: bool
    rule: str
    reason: str


def _decode(raw: str) -> str:
    # compat32 keeps undecodable bytes as surrogates; show them as U+FFFD instead of failing.
    try:
        return raw.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return raw.encode("utf-8", "replace").decode("utf-8", "replace")


def parse_incoming(sender: str, raw: bytes) -> Incoming:
    """Header lines of a raw message (any bytes, never raises), lower-case names, unfolded."""
    head = raw[:MAX_HEADER_BYTES]
    end = min((i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0), default=len(head))
    message = BytesParser(policy=compat32).parsebytes(head[: end + 2], headersonly=True)
    headers = tuple(
        (str(name).strip().lower(), re.sub(r"\r?\n[ \t]*", " ", _decode(str(value))).strip())
        for name, value in message.raw_items()
    )
    return Incoming(sender=normalise_address(_decode(sender)), headers=headers)


def normalise_address(address: str) -> str:
    return address.strip().strip("<>").strip().lower()


def addresses_in(incoming: Incoming, names: tuple[str, ...]) -> set[str]:
    values = [value for name in names for value in incoming.values(name)]
    return {normalise_address(address) for _, address in getaddresses(values) if address}


def _stop(rule: str, reason: str) -> Decision:
    return Decision(reply=False, rule=rule, reason=reason)


Rule = Callable[[Incoming, Recipient, datetime], Decision | None]


def rule_sender_suspended(incoming: Incoming, recipient: Recipient, now: datetime) -> Decision | None:
    # Replies leave with MAIL FROM:<>, so Postfix's sender checks never see them: the
    # responder is the only place where a suspension can stop them.
    if recipient.suspended:
        return _stop("sender-suspended", f"the user may not send mail now ({recipient.suspended})")
    return None


def _strip_comments(value: str) -> str:
    # RFC 5322 comments, nested: "(...)" anywhere in a header value.
    out: list[str] = []
    depth = 0
    for char in value:
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif not depth:
            out.append(char)
    return "".join(out)


FAILED_AUTHENTICATION = re.compile(r"\b(spf=(?:fail|softfail)|dmarc=fail)\b", re.IGNORECASE)


def failed_authentication(incoming: Incoming, authserv_id: str) -> str:
    """The failed result our own server recorded in Authentication-Results (RFC 8601), or "".
    Headers naming another authserv-id are anybody's and are ignored."""
    if not authserv_id:
        return ""
    for value in incoming.values("authentication-results"):
        server, _, results = _strip_comments(value).partition(";")
        fields = server.split()
        if not fields or fields[0].lower() != authserv_id.lower():
            continue
        found = FAILED_AUTHENTICATION.search(results)
        if found:
            return found.group(1).lower()
    return ""


def window_state(enabled: bool, starts_at: datetime | None, ends_at: datetime | None, now: datetime) -> str:
    """off, scheduled, on or ended: what the reply is at `now`. The rules below and every page
    that shows a vacation's status (outofoffice/status.py) ask this one function."""
    if not enabled:
        return "off"
    if starts_at is not None and now < starts_at:
        return "scheduled"
    if ends_at is not None and now >= ends_at:
        return "ended"
    return "on"


def rule_vacation_off(incoming: Incoming, recipient: Recipient, now: datetime) -> Decision | None:
    if not recipient.enabled:
        return _stop("vacation-off", "the vacation reply is switched off")
    return None


def rule_outside_window(incoming: Incoming, recipient: Recipient, now: datetime) -> Decision | None:
    state = window_state(recipient.enabled, recipient.starts_at, recipient.ends_at, now)
    if state == "scheduled":
        return _stop("outside-window", "the vacation has not started yet")
    if state == "ended":
        return _stop("outside-window", "the vacation has ended")
    return None


def rule_empty_sender(incoming: Incoming, recipient: Recipient, now: datetime) -> Decision | None:
    if not incoming.sender:
        return _stop("empty-sender", "the envelope sender is empty (a bounce or another automatic message)")
    if not ADDRESS_PATTERN.match(incoming.sender):
        return _stop("empty-sender", "the envelope sender is not a usable address")
    return None


def rule_system_sender(incoming: Incoming, recipient: Recipient, now: datetime) -> Decision | None:
    local_part = incoming.sender.rsplit("@", 1)[0]
    if SYSTEM_LOCAL_PARTS.match(local_part):
        return _stop("system-sender", "the sender is a system, list or no-reply address")
    return None


def rule_sender_is_user(incoming: Incoming, recipient: Recipient, now: datetime) -> Decision | None:
    if incoming.sender in recipient.own_addresses:
        return _stop("sender-is-user", "the sender is the user themselves")
    return None


def rule_loop_marker(incoming: Incoming, recipient: Recipient, now: datetime) -> Decision | None:
    if incoming.values(LOOP_HEADER):
        return _stop("loop", "the message is one of our own vacation replies")
    return None


def rule_auto_submitted(incoming: Incoming, recipient: Recipient, now: datetime) -> Decision | None:
    for value in incoming.values("auto-submitted"):
        if value.split(";", 1)[0].strip().lower() != "no":
            return _stop("auto-submitted", "the message is marked Auto-Submitted")
    return None


def rule_list(incoming: Incoming, recipient: Recipient, now: datetime) -> Decision | None:
    if any(name.startswith("list-") for name, _ in incoming.headers):
        return _stop("mailing-list", "the message came through a mailing list (List-* header)")
    return None


def rule_precedence(incoming: Incoming, recipient: Recipient, now: datetime) -> Decision | None:
    if any(value.strip().lower() in ("bulk", "list", "junk") for value in incoming.values("precedence")):
        return _stop("precedence", "the message has Precedence bulk, list or junk")
    return None


def rule_suppress(incoming: Incoming, recipient: Recipient, now: datetime) -> Decision | None:
    for value in incoming.values("x-auto-response-suppress"):
        tokens = {token.strip().lower() for token in value.split(",")}
        if tokens & {"all", "oof"}:
            return _stop("suppressed", "the sender asked for no automatic replies (X-Auto-Response-Suppress)")
    return None


def rule_spam(incoming: Incoming, recipient: Recipient, now: datetime) -> Decision | None:
    flagged = (
        any(value.lower().startswith("yes") for value in incoming.values("x-spam-flag"))
        or any(value.lower().startswith("yes") for value in incoming.values("x-spam-status"))
        or any(value.lower().startswith("yes") for value in incoming.values("x-spam"))
    )
    if flagged:
        return _stop("spam", "the message is flagged as spam")
    return None


def rule_not_addressed(incoming: Incoming, recipient: Recipient, now: datetime) -> Decision | None:
    if not addresses_in(incoming, RECIPIENT_HEADERS) & recipient.reply_addresses:
        return _stop(
            "not-addressed",
            "none of the user's addresses is in To, Cc, Bcc or Resent-* "
            "(disposable aliases count only where replies are switched on)",
        )
    return None


def rule_already_answered(incoming: Incoming, recipient: Recipient, now: datetime) -> Decision | None:
    if recipient.last_reply_at is not None and now < recipient.last_reply_at + recipient.interval:
        return _stop("already-answered", "this sender already got this reply within the interval")
    return None


RULES: tuple[Rule, ...] = (
    rule_sender_suspended,
    rule_vacation_off,
    rule_outside_window,
    rule_empty_sender,
    rule_system_sender,
    rule_sender_is_user,
    rule_loop_marker,
    rule_auto_submitted,
    rule_list,
    rule_precedence,
    rule_suppress,
    rule_spam,
    rule_not_addressed,
    rule_already_answered,
)

REPLY = Decision(reply=True, rule="reply", reason="a vacation reply goes to the envelope sender")


def _limit_decision(incoming: Incoming, recipient: Recipient, limits: Limits) -> Decision | None:
    failed = failed_authentication(incoming, limits.authserv_id)
    if failed:
        return _stop("forged-sender", f"our server recorded {failed} for this message: the sender may be forged")
    if recipient.all_replies_last_hour >= limits.all_users_hour:
        return _stop("cap-all-users", f"{recipient.all_replies_last_hour} replies from all users in the last hour")
    if recipient.replies_last_hour >= limits.per_user_hour:
        return _stop("cap-user-hour", f"{recipient.replies_last_hour} replies from this user in the last hour")
    if recipient.replies_last_day >= limits.per_user_day:
        return _stop("cap-user-day", f"{recipient.replies_last_day} replies from this user in the last day")
    return None


def decide(incoming: Incoming, recipient: Recipient | None, now: datetime, limits: Limits = NO_LIMITS) -> Decision:
    if recipient is None:
        return _stop("no-vacation", "this user has no vacation reply set")
    for rule in RULES:
        decision = rule(incoming, recipient, now)
        if decision is not None:
            return decision
    # Last, so that the caps count only copies that would otherwise have been answered.
    return _limit_decision(incoming, recipient, limits) or REPLY
