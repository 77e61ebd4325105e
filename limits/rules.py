"""Outbound limits as plain data, and the decision over counts (pure: no I/O, no clock).

A limit has a soft value (past it further mail is deferred with 451 4.7.1) and a hard value,
HARD_FACTOR times the soft one (past it the sender is suspended). Recipients per message has
only the soft step: a message addressed to too many people is deferred, not a reason to suspend.
Counts include the recipient being decided, deferred attempts too: a client that keeps pushing
past the soft limit reaches the hard one, a person who stops does not.
"""

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    messages_per_hour: int
    recipients_per_hour: int
    recipients_per_day: int
    recipients_per_message: int
    hard_factor: int

    def hard(self, soft: int) -> int:
        return soft * self.hard_factor


@dataclass(frozen=True)
class Counts:
    messages_hour: int
    recipients_hour: int
    recipients_day: int


class Verdict(enum.Enum):
    SEND = "send"
    DEFER = "defer"
    SUSPEND = "suspend"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    why: str = ""


def decide(counts: Counts, limits: Limits, recipients_in_message: int) -> Decision:
    windows = (
        (counts.messages_hour, limits.messages_per_hour, "messages in 1 hour"),
        (counts.recipients_hour, limits.recipients_per_hour, "recipients in 1 hour"),
        (counts.recipients_day, limits.recipients_per_day, "recipients in 1 day"),
    )
    for count, soft, what in windows:
        if count > limits.hard(soft):
            return Decision(Verdict.SUSPEND, f"automatic: {count} {what} (hard limit {limits.hard(soft)})")
    for count, soft, what in windows:
        if count > soft:
            return Decision(Verdict.DEFER, f"{what}: limit {soft} reached")
    if recipients_in_message > limits.recipients_per_message:
        return Decision(Verdict.DEFER, f"recipients in one message: limit {limits.recipients_per_message} reached")
    return Decision(Verdict.SEND)
