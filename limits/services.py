"""Effective limits, and what the policy service does past a hard limit."""

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from accounts import directory, suspension
from accounts.models import SenderSuspension
from aliases.models import Alias, Domain
from limits.counters import Counters
from limits.guard import OutboundGuard
from limits.models import SendingLimit
from limits.rules import Limits

log = logging.getLogger(__name__)

FIELDS = ("messages_per_hour", "recipients_per_hour", "recipients_per_day", "recipients_per_message")


def default_limits() -> Limits:
    return Limits(
        messages_per_hour=settings.LIMIT_MESSAGES_PER_HOUR,
        recipients_per_hour=settings.LIMIT_RECIPIENTS_PER_HOUR,
        recipients_per_day=settings.LIMIT_RECIPIENTS_PER_DAY,
        recipients_per_message=settings.LIMIT_RECIPIENTS_PER_MESSAGE,
        hard_factor=settings.LIMIT_HARD_FACTOR,
    )


@dataclass(frozen=True)
class Overrides:
    """Every override, read in one query; the policy service keeps one and refreshes it."""

    domains: dict[str, SendingLimit]
    people: dict[str, SendingLimit]

    @classmethod
    def load(cls) -> "Overrides":
        rows = list(SendingLimit.objects.all())
        return cls(
            domains={r.name: r for r in rows if r.scope == SendingLimit.DOMAIN},
            people={r.name: r for r in rows if r.scope == SendingLimit.PERSON},
        )

    def effective(self, uid: str, domain: str) -> Limits:
        limits = default_limits()
        for row in (self.domains.get(domain.lower()), self.people.get(uid)):
            if row is not None:
                changed = {f: getattr(row, f) for f in FIELDS if getattr(row, f) is not None}
                limits = replace(limits, **changed)
        return limits


def effective_limits(uid: str, mail: str) -> Limits:
    return Overrides.load().effective(uid, mail.rpartition("@")[2])


def uid_of(login: str) -> str | None:
    """The directory uid behind a SASL login or an envelope sender (mailbox or alias)."""
    if "@" not in login:
        return login if directory.get_user(login) is not None else None
    person = directory.find_user_by_mail(login)
    if person is not None:
        return person.uid
    local, _, domain = login.rpartition("@")
    alias = Alias.objects.filter(local_part__iexact=local, domain__name__iexact=domain).select_related("owner").first()
    return alias.owner.get_username() if alias is not None else None


def suspend_automatically(login: str, why: str) -> str | None:
    """Suspend the person behind `login` through the one suspension path (LDAP flag, sender
    map, audit by the system, notices to them and the admins). Returns the uid, or None."""
    try:
        uid = uid_of(login)
    except directory.DirectoryError:
        log.exception("outbound limit: cannot find who %s is; not suspended", login)
        return None
    if uid is None:
        log.warning("outbound limit passed by %s, who is nobody in the directory; not suspended", login)
        return None
    until = timezone.now() + timedelta(seconds=settings.LIMIT_SUSPENSION_SECONDS)
    try:
        suspension.suspend(uid, why, until, actor=None, notify=True)
    except suspension.SuspensionError as exc:
        log.warning("outbound limit: suspending %s (%s): %s", uid, login, exc)
        return uid if suspension.is_suspended(uid) else None
    log.warning("outbound limit: %s (%s) suspended: %s", uid, login, why)
    return uid


def automatic_suspensions() -> Iterable[SenderSuspension]:
    return SenderSuspension.objects.active().filter(created_by_name=suspension.SYSTEM)


@dataclass(frozen=True)
class OutboundSnapshot:
    """What the guard needs from the database, read by the policy service's refresh thread."""

    overrides: Overrides
    domains: frozenset[str]
    lifted: dict[str, float]  # uid and mailbox -> time.time() of the latest lift in 25 hours

    @classmethod
    def empty(cls) -> "OutboundSnapshot":
        return cls(overrides=Overrides(domains={}, people={}), domains=frozenset(), lifted={})

    @classmethod
    def load(cls) -> "OutboundSnapshot":
        since = timezone.now() - timedelta(hours=25)
        lifted: dict[str, float] = {}
        for uid, mail, at in SenderSuspension.objects.filter(lifted_at__gte=since).values_list(
            "uid", "mail", "lifted_at"
        ):
            for key in (uid.lower(), mail.lower()):
                if key and at is not None:
                    lifted[key] = max(lifted.get(key, 0.0), at.timestamp())
        domains = {settings.MAIL_DOMAIN.lower(), *(n.lower() for n in Domain.objects.values_list("name", flat=True))}
        return cls(overrides=Overrides.load(), domains=frozenset(domains), lifted=lifted)


def build_guard(snapshot: Callable[[], OutboundSnapshot], executor: Executor) -> OutboundGuard:
    """The guard as the policy service runs it: the snapshot from memory, counters in Redis, a
    suspension done on a worker thread so the answer does not wait for LDAP and mail."""
    return OutboundGuard(
        counters=Counters(settings.LIMIT_COUNTER_URL),
        limits_for=lambda login, domain: snapshot().overrides.effective(login, domain),
        suspend=lambda login, why: executor.submit(_suspend_in_thread, login, why),
        local_networks=settings.LIMIT_LOCAL_NETWORKS,
        local_domains=lambda: snapshot().domains,
        lifted_at=lambda login: snapshot().lifted.get(login),
        reject_text=settings.SUSPENSION_REJECT_TEXT,
    )


def _suspend_in_thread(login: str, why: str) -> None:
    try:
        suspend_automatically(login, why)
    except DatabaseError:
        log.exception("outbound limit: automatic suspension of %s failed; a fresh connection next time", login)
        connection.close()  # this worker thread's own connection, perhaps broken
    except Exception:
        log.exception("outbound limit: automatic suspension of %s failed", login)
