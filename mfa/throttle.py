"""Wrong second-factor codes, throttled like passwords (accounts/throttle.py): each attempt
claims a slot before its code is checked, in one transaction serialised per account, so
parallel guesses cannot all pass one check. SECOND_FACTOR_FAILURE_LIMIT failures per
SECOND_FACTOR_FAILURE_WINDOW per account; past it every code is refused, a right one too.

Per account only: whoever types here already has the password, so more addresses must not
buy more guesses. At the default (10 per 15 minutes) and three codes valid at a time, a
guesser needs about 350 days of steady trying for an even chance, and every failure is in the
audit log."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.throttle import serialise
from mfa.models import SecondFactorFailure


def claim(username: str) -> int | None:
    """A slot for one code of this account, or None when the limit is reached (then nothing is
    recorded, and no code may be checked)."""
    now = timezone.now()
    with transaction.atomic():
        serialise(f"mailadmin-second-factor:{username}")
        slot = SecondFactorFailure.objects.create(username=username, created_at=now)
        since = now - timedelta(seconds=settings.SECOND_FACTOR_FAILURE_WINDOW)
        if SecondFactorFailure.objects.filter(username=username, created_at__gte=since).count() > (
            settings.SECOND_FACTOR_FAILURE_LIMIT
        ):
            slot.delete()
            return None
    return slot.pk


def failed(slot: int) -> None:
    """The code was wrong: its slot stays. Old rows go."""
    cutoff = timezone.now() - timedelta(seconds=settings.SECOND_FACTOR_FAILURE_WINDOW * 2)
    SecondFactorFailure.objects.filter(created_at__lt=cutoff).delete()


def succeeded(username: str) -> None:
    """The right code: the account's failures are forgotten."""
    SecondFactorFailure.objects.filter(username=username).delete()
