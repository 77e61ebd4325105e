"""Sign-in throttling. Each attempt claims a slot before its password is checked, and the
claim and the count are one transaction, serialised per account, so parallel guesses cannot
all pass one check. The limits (docs/sign-in.md):

- per account and client address: LOGIN_FAILURE_LIMIT failures per LOGIN_FAILURE_WINDOW;
- per account, from addresses it has never signed in from: LOGIN_ACCOUNT_FAILURE_LIMIT
  failures per hour, so an attacker with many addresses gets a bounded number of guesses,
  while the owner, from an address they signed in from before, still gets in;
- per client address across accounts: LOGIN_ADDRESS_FAILURE_LIMIT per window, generous, so
  one office behind a NAT is not locked out by one person's typos.
"""

from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import SignInFailure
from audit.models import AuditEvent

KNOWN_ADDRESS_DAYS = 90


def serialise(lock_name: str) -> None:
    """Inside a transaction: one at a time per lock name until commit (also for mfa/throttle.py).
    SQLite: the INSERT that follows takes the database's write lock until commit.
    PostgreSQL: a transaction-scoped advisory lock per name."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [lock_name])


def _known_address(username: str, address: str | None) -> bool:
    if address is None:
        return False
    since = timezone.now() - timedelta(days=KNOWN_ADDRESS_DAYS)
    return AuditEvent.objects.filter(
        action="sign-in", target=username, client_address=address, created_at__gte=since
    ).exists()


def claim(username: str, address: str | None) -> int | None:
    """Claim one attempt for this account from this address: the slot's id, or None when a
    limit is reached (then nothing is recorded and no password may be checked)."""
    username = username.lower()[:150]
    now = timezone.now()
    with transaction.atomic():
        serialise(f"mailadmin-sign-in:{username}")
        slot = SignInFailure.objects.create(username=username, client_address=address, created_at=now)
        window = SignInFailure.objects.filter(created_at__gte=now - timedelta(seconds=settings.LOGIN_FAILURE_WINDOW))
        over = window.filter(username=username, client_address=address).count() > settings.LOGIN_FAILURE_LIMIT
        if not over and address is not None:
            over = window.filter(client_address=address).count() > settings.LOGIN_ADDRESS_FAILURE_LIMIT
        if not over:
            hour = SignInFailure.objects.filter(username=username, created_at__gte=now - timedelta(hours=1))
            over = hour.count() > settings.LOGIN_ACCOUNT_FAILURE_LIMIT and not _known_address(username, address)
        if over:
            slot.delete()
            return None
    return slot.pk


def failed(slot: int) -> None:
    """The claimed attempt failed: its slot stays as a failure. Old rows go."""
    cutoff = timezone.now() - timedelta(seconds=max(settings.LOGIN_FAILURE_WINDOW, 3600) * 2)
    SignInFailure.objects.filter(created_at__lt=cutoff).delete()


def not_counted(slot: int) -> None:
    """The attempt says nothing about the password (the directory did not answer)."""
    SignInFailure.objects.filter(pk=slot).delete()


def succeeded(slot: int, username: str, address: str | None) -> None:
    """Signed in: the failures of this account from this address are forgotten."""
    SignInFailure.objects.filter(pk=slot).delete()
    SignInFailure.objects.filter(username=username.lower()[:150], client_address=address).delete()
