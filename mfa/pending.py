"""The visitor who gave the right password but not yet the second factor.

They are not signed in: Django sees an anonymous visitor, so no view can serve them as the
person. The session only remembers who they said they were, for a few minutes, and the
middleware lets them reach nothing but the second-factor pages (mfa.middleware). When the
factor is given, `complete` signs them in, if the directory still says they may.
"""

import time
from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth import BACKEND_SESSION_KEY, login, logout
from django.contrib.auth.models import User
from django.http import HttpRequest

from accounts import assurance, directory, session_check
from audit.models import record_event

PENDING_KEY = "mfa_pending"
# Time from the password to the second factor (enrolment included).
PENDING_SECONDS = 900


class SignInExpired(Exception):
    """The pending sign-in is gone: too old, or the directory changed under it."""


@dataclass(frozen=True)
class Pending:
    user_id: int
    uid: str
    backend: str
    since: float
    password_digest: str | None
    next_url: str


def hold(request: HttpRequest, user: User, next_url: str) -> None:
    """Take a signed-in person out of the session until they give a second factor."""
    digest = request.session.get(session_check.PASSWORD_DIGEST)
    backend = request.session.get(BACKEND_SESSION_KEY) or "accounts.backends.CramMD5LDAPBackend"
    logout(request)
    request.session[PENDING_KEY] = {
        "user_id": user.pk,
        "uid": user.get_username(),
        "backend": backend,
        "since": time.time(),
        "password_digest": digest,
        "next": next_url,
    }


def pending_of(request: HttpRequest) -> Pending | None:
    value = request.session.get(PENDING_KEY)
    if not isinstance(value, dict):
        return None
    since = value.get("since")
    if not isinstance(since, float) or not 0 <= time.time() - since <= PENDING_SECONDS:
        del request.session[PENDING_KEY]
        return None
    return Pending(
        user_id=int(value["user_id"]),
        uid=str(value["uid"]),
        backend=str(value["backend"]),
        since=since,
        password_digest=value.get("password_digest"),
        next_url=str(value.get("next") or ""),
    )


def user_of(pending: Pending) -> User | None:
    return User.objects.filter(pk=pending.user_id, username=pending.uid).first()


def complete(request: HttpRequest, pending: Pending, method: str) -> None:
    """Sign the pending person in with this second factor. SignInExpired if the directory no
    longer has them with the password they gave; DirectoryUnavailable if it cannot say."""
    user = user_of(pending)
    facts = directory.session_facts(pending.uid)
    if (
        user is None
        or facts is None
        or not facts.has_password
        or (pending.password_digest is not None and facts.password_digest != pending.password_digest)
    ):
        drop(request)
        raise SignInExpired("Your account changed in the directory. Please sign in again.")
    login(request, user, backend=pending.backend)  # a new session key
    request.session.pop(PENDING_KEY, None)
    assurance.record(request, method)
    session_check.remember_password(request)
    record_event("sign-in.second-factor", request=request, target=pending.uid, detail=method)


def drop(request: HttpRequest) -> None:
    request.session.pop(PENDING_KEY, None)


def expired_message(request: HttpRequest) -> None:
    messages.info(request, "Signing in took too long. Please start again.")
