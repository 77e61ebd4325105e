"""Counts kept in memory between flushes: one dictionary update per decision, no I/O."""

from dataclasses import dataclass, field
from datetime import date, datetime

from policy.decision import Outcome

# Past this many distinct keys waiting (the database was down a long time), new keys are
# dropped and counted as lost rather than growing without bound.
MAX_KEYS = 200_000


@dataclass(slots=True)
class DailyCount:
    last_at: datetime
    accepted: int = 0
    refused: int = 0


@dataclass(slots=True)
class SenderCount:
    first_at: datetime
    last_at: datetime
    last_sender: str = ""
    accepted: int = 0
    refused: int = 0


@dataclass
class Batch:
    daily: dict[tuple[int, date], DailyCount] = field(default_factory=dict)
    senders: dict[tuple[int, str], SenderCount] = field(default_factory=dict)
    stopped: dict[int, tuple[int, datetime]] = field(default_factory=dict)  # block id -> (mails, last)
    leaks: dict[tuple[int, str], tuple[str, datetime]] = field(default_factory=dict)  # -> (sender domain, at)
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.daily) + len(self.senders) + len(self.stopped) + len(self.leaks)

    def add(self, outcome: Outcome, now: datetime) -> None:
        """Count one decision (the hot path: a few dictionary operations, objects made only for new keys)."""
        if len(self.daily) + len(self.senders) >= MAX_KEYS:
            self.dropped += 1
            return
        block_id = outcome.block_id
        refused = block_id is not None
        if block_id is not None:
            mails, _ = self.stopped.get(block_id, (0, now))
            self.stopped[block_id] = (mails + 1, now)
        alias_id = outcome.alias_id
        if alias_id is None:
            return  # a mailbox or an untracked address: only its blocks are counted
        key = (alias_id, now.date())
        daily = self.daily.get(key)
        if daily is None:
            daily = self.daily[key] = DailyCount(now)
        elif now > daily.last_at:
            daily.last_at = now
        if refused:
            daily.refused += 1
        else:
            daily.accepted += 1
        if outcome.sender_domain:
            sender_key = (alias_id, outcome.sender_domain)
            sender = self.senders.get(sender_key)
            if sender is None:
                sender = self.senders[sender_key] = SenderCount(now, now)
            elif now >= sender.last_at:
                sender.last_at = now
            sender.last_sender = outcome.sender
            if refused:
                sender.refused += 1
            else:
                sender.accepted += 1
        if outcome.leak_domain is not None:
            self.leaks.setdefault((alias_id, outcome.leak_domain), (outcome.sender_domain, now))

    def merge(self, later: "Batch") -> None:
        """Put a batch that could not be written back in front of the counts made since."""
        for day_key, d in later.daily.items():
            mine = self.daily.setdefault(day_key, DailyCount(d.last_at))
            mine.accepted += d.accepted
            mine.refused += d.refused
            mine.last_at = max(mine.last_at, d.last_at)
        for sender_key, s in later.senders.items():
            had = self.senders.setdefault(sender_key, s)
            if had is s:
                continue
            had.accepted += s.accepted
            had.refused += s.refused
            had.first_at = min(had.first_at, s.first_at)
            if s.last_at >= had.last_at:
                had.last_at, had.last_sender = s.last_at, s.last_sender
        for block, (mails, at) in later.stopped.items():
            before, before_at = self.stopped.get(block, (0, at))
            self.stopped[block] = (before + mails, max(at, before_at))
        for key, leak in later.leaks.items():
            self.leaks.setdefault(key, leak)
        self.dropped += later.dropped
