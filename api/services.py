"""Personal API tokens: issuing, revoking, and checking one on every API request.

A token is checked on every request, not cached: the row (revoked, expired), the rate limit, and
the owner as the directory has them now (accounts.session_check.directory_standing, the same
check web sessions rest on), so a person disabled or suspended in LDAP, or suspended here, is
stopped at their very next request.

The rate limit counts requests per token in a fixed window in Redis (mailadmin/counters.py):
an increment there costs well under a millisecond, while a counter in the token's SQL row took
SQLite's one write lock on every request and queued concurrent requests behind each other
(docs/api.md has the figures). When Redis does not answer, the API refuses every call with 503
and logs it: the limit is never silently off.

A token's last use is written only when a minute has passed or the client's address changed, so
a busy client does not write to the database on every read.
"""

import hashlib
import logging
import re
import secrets
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import SenderSuspension
from accounts.session_check import directory_standing
from api.models import ApiToken, ApiTokenAddress
from audit.models import client_address, record_event
from mailadmin import counters
from mailadmin.redis_store import RedisUnavailable

log = logging.getLogger(__name__)

# "mat" for mailadmin token: secret scanners and people can tell what a leaked string is.
TOKEN_PREFIX = "mat_"
TOKEN_PATTERN = re.compile(r"\Amat_[A-Za-z0-9_-]{43}\Z")
DISPLAY_LENGTH = len(TOKEN_PREFIX) + 6
LAST_USE_PRECISION = timedelta(seconds=60)


class TokenRefused(Exception):
    """The token does not open the API (401); the message is for the token's owner."""


class AccountSuspended(TokenRefused):
    """The token is fine but its owner may not act now (403)."""


class ScopeRefused(Exception):
    """The token may read, and was used to change something (403)."""


class RateLimiterDown(Exception):
    """Redis, which holds the rate limit, did not answer: no call goes through unlimited (503)."""


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many requests with this token. Try again in {retry_after} seconds.")
        self.retry_after = retry_after


def digest_of(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def issue_token(
    request: HttpRequest, owner: User, *, name: str, scope: str, expires_at: datetime | None
) -> tuple[ApiToken, str]:
    """A new token and its only clear copy (shown once, never stored)."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            owner=owner,
            name=name,
            scope=scope,
            digest=digest_of(raw),
            display_prefix=raw[:DISPLAY_LENGTH],
            expires_at=expires_at,
        )
        expiry = f", expires {expires_at:%Y-%m-%d %H:%M %Z}" if expires_at else ", no expiry"
        detail = f"“{name}” ({token.display_prefix}…), scope {scope}{expiry}"
        record_event("api_token.create", request=request, actor=owner, target=owner.get_username(), detail=detail)
    return token, raw


def revoke_token(request: HttpRequest, token: ApiToken) -> None:
    """From now on the token opens nothing; the row stays for the list and the audit log."""
    with transaction.atomic():
        revoked = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=request.user if request.user.is_authenticated else None
        )
        if revoked:
            detail = f"“{token.name}” ({token.display_prefix}…)"
            record_event("api_token.revoke", request=request, target=token.owner.get_username(), detail=detail)
    token.refresh_from_db(fields=["revoked_at", "revoked_by"])


def tokens_of(owner: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(owner=owner).order_by("-created_at", "-id")


def authenticate(request: HttpRequest, raw: str) -> ApiToken:
    """The token named by `raw`, allowed to go on now; TokenRefused, AccountSuspended or
    RateLimited otherwise. DirectoryUnavailable when LDAP cannot say whether the owner may."""
    if not TOKEN_PATTERN.fullmatch(raw):
        raise TokenRefused("This is not a mailadmin API token.")
    token = _with_standing().filter(digest=digest_of(raw)).first()
    if token is None:
        raise TokenRefused("Unknown API token.")
    now = timezone.now()
    if token.revoked_at is not None:
        raise TokenRefused("This API token was revoked.")
    if token.is_expired(now):
        raise TokenRefused("This API token has expired.")
    _count_request(token)
    owner = token.owner
    facts = directory_standing(owner, mirror=False)
    if facts is None or not facts.has_password:
        raise TokenRefused("The account of this API token is disabled.")
    if facts.sender_blocked or _owner_suspended(token):
        raise AccountSuspended(
            f"Your account is suspended, so its API tokens do not work. Contact {settings.ABUSE_CONTACT}."
        )
    _note_use(request, token, now)
    return token


# The token's query: its owner, and whether the owner's sending is suspended here (a
# SenderSuspension in force: what accounts.suspension.is_suspended asks), in one query instead
# of two. Built once per process (resolving the subquery costs more than the query it saves)
# and narrowed per request, as accounts.backends builds the signed-in user's: a query, not data.
@lru_cache(maxsize=1)
def _with_standing() -> QuerySet[ApiToken]:
    suspended = Exists(SenderSuspension.objects.active().filter(uid=OuterRef("owner__username")))
    return ApiToken.objects.select_related("owner").annotate(owner_suspended=suspended)


def _owner_suspended(token: ApiToken) -> bool:
    return bool(token.owner_suspended)  # type: ignore[attr-defined]


def rate_key(token: ApiToken) -> str:
    # The digest too: a database restored from a backup, or a test run, can give a new token an old id.
    return f"api-token:{token.pk}:{token.digest[:16]}"


def _count_request(token: ApiToken) -> None:
    try:
        counted = counters.count(rate_key(token), settings.API_RATE_WINDOW)
    except RedisUnavailable as exc:
        log.error("API rate limit unavailable, refusing the call: %s", exc)
        message = "The API is paused for a moment (its rate limiter does not answer). Try again soon."
        raise RateLimiterDown(message) from exc
    if counted.value > settings.API_RATE_LIMIT:
        raise RateLimited(counted.resets_in)


def _note_use(request: HttpRequest, token: ApiToken, now: datetime) -> None:
    """Remember the last use (to the minute) and audit the first use from each address."""
    address = client_address(request)
    moved = address is not None and address != token.last_used_from
    if moved:
        _note_address(request, token, address)
    if moved or token.last_used_at is None or now - token.last_used_at >= LAST_USE_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_from=address)


def _note_address(request: HttpRequest, token: ApiToken, address: str | None) -> None:
    if address is None:
        return
    _, created = ApiTokenAddress.objects.get_or_create(token=token, address=address)
    if created:
        record_event(
            "api_token.new_address",
            request=request,
            actor=token.owner,
            target=token.owner.get_username(),
            detail=f"“{token.name}” ({token.display_prefix}…) used from {address} for the first time",
        )
