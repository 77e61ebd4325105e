"""Personal API tokens: issuing, revoking, and checking one on every API request.

A token is checked on every request, not cached: the row (revoked, expired), the rate limit, and
the owner as the directory has them now (accounts.session_check.directory_standing, the same
check web sessions rest on), so a person disabled or suspended in LDAP, or suspended here, is
stopped at their very next request.

The rate limit counts requests per token in a fixed window, in the token's own database row.
The API needs the database for every call anyway, so the limit can never be down while the API
is up; a Redis counter would add a second thing that can fail, and with it the choice between
refusing every call and silently not limiting.
"""

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from accounts.session_check import directory_standing
from accounts.suspension import is_suspended
from api.models import ApiToken, ApiTokenAddress
from audit.models import client_address, record_event

# "mat" for mailadmin token: secret scanners and people can tell what a leaked string is.
TOKEN_PREFIX = "mat_"
TOKEN_PATTERN = re.compile(r"\Amat_[A-Za-z0-9_-]{43}\Z")
DISPLAY_LENGTH = len(TOKEN_PREFIX) + 6


class TokenRefused(Exception):
    """The token does not open the API (401); the message is for the token's owner."""


class AccountSuspended(TokenRefused):
    """The token is fine but its owner may not act now (403)."""


class ScopeRefused(Exception):
    """The token may read, and was used to change something (403)."""


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
    token = ApiToken.objects.select_related("owner").filter(digest=digest_of(raw)).first()
    if token is None:
        raise TokenRefused("Unknown API token.")
    now = timezone.now()
    if token.revoked_at is not None:
        raise TokenRefused("This API token was revoked.")
    if token.is_expired(now):
        raise TokenRefused("This API token has expired.")
    address = client_address(request)
    _count_request(token, now, address)
    owner = token.owner
    facts = directory_standing(owner)
    if facts is None or not facts.has_password:
        raise TokenRefused("The account of this API token is disabled.")
    if facts.sender_blocked or is_suspended(owner):
        raise AccountSuspended(
            f"Your account is suspended, so its API tokens do not work. Contact {settings.ABUSE_CONTACT}."
        )
    if address is not None and address != token.last_used_from:
        _note_address(request, token, address)
    token.last_used_from = address
    return token


def _count_request(token: ApiToken, now: datetime, address: str | None) -> None:
    """One request against the token's window; RateLimited past API_RATE_LIMIT. The update
    checks the count itself, so concurrent requests cannot all take the last slot."""
    limit, window = settings.API_RATE_LIMIT, timedelta(seconds=settings.API_RATE_WINDOW)
    rows = ApiToken.objects.filter(pk=token.pk)
    used = {"last_used_at": now, "last_used_from": address}
    for _ in range(3):
        start = token.window_started_at
        if start is not None and start <= now < start + window:
            counted = rows.filter(window_started_at=start, window_count__lt=limit).update(
                window_count=F("window_count") + 1, **used
            )
        else:
            counted = rows.filter(window_started_at=start).update(window_started_at=now, window_count=1, **used)
        if counted:
            return
        token.refresh_from_db(fields=["window_started_at", "window_count"])
        start = token.window_started_at
        if start is not None and start <= now < start + window and token.window_count >= limit:
            raise RateLimited(max(1, int((start + window - now).total_seconds()) + 1))
    raise RateLimited(1)  # the window moved under us three times: ask the client to come back


def _note_address(request: HttpRequest, token: ApiToken, address: str) -> None:
    _, created = ApiTokenAddress.objects.get_or_create(token=token, address=address)
    if created:
        record_event(
            "api_token.new_address",
            request=request,
            actor=token.owner,
            target=token.owner.get_username(),
            detail=f"“{token.name}” ({token.display_prefix}…) used from {address} for the first time",
        )
