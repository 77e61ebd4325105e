"""A web session is a cache of directory facts (the person exists, has a password, holds a
role). This middleware checks them against LDAP again every SESSION_RECHECK_SECONDS, so a
change made with any LDAP tool reaches a signed-in browser within that time."""

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.models import Group, User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts import directory
from accounts.backends import STAFF_GROUPS, group_name
from accounts.forms import UNAVAILABLE
from accounts.roles import remember_role
from mailadmin.security import is_token_only

CHECKED_AT = "directory_checked_at"
PASSWORD_DIGEST = "directory_password_digest"


def follow_directory(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        if is_token_only(request):
            return get_response(request)
        user = request.user
        if isinstance(user, User) and user.is_authenticated:
            now = time.time()
            last = request.session.get(CHECKED_AT)
            stale = not isinstance(last, float) or not 0 <= now - last < settings.SESSION_RECHECK_SECONDS
            if stale:
                refused = recheck(request, user, now)
                if refused is not None:
                    return refused
        return get_response(request)

    return middleware


def recheck(request: HttpRequest, user: User, now: float) -> HttpResponse | None:
    """Check the session against the directory now; a response when it may not go on."""
    try:
        facts = directory_standing(user)
    except directory.DirectoryUnavailable:
        # Whether this person still holds their role is unknown: serve nothing on stale
        # powers. The next request checks again.
        return render(request, "accounts/directory_unavailable.html", {"message": UNAVAILABLE}, status=503)
    known = request.session.get(PASSWORD_DIGEST)
    if facts is None or not facts.has_password or (known is not None and known != facts.password_digest):
        logout(request)
        messages.info(request, "Your session has ended: your account changed in the directory. Please sign in again.")
        return redirect("accounts:login")
    request.session[PASSWORD_DIGEST] = facts.password_digest
    request.session[CHECKED_AT] = now
    return None


def directory_standing(user: User) -> directory.SessionFacts | None:
    """The person as the directory has them now (None: the entry is gone), with their staff
    roles mirrored from its groups. Web sessions (above) and API tokens (api/services.py) both
    rest on it. Raises DirectoryUnavailable."""
    facts = directory.session_facts(user.get_username())
    if facts is not None:
        _mirror_roles(user, facts.groups)
    return facts


def remember_password(request: HttpRequest) -> None:
    """At sign-in, and after the person changed their own password here: this session rests
    on the password the directory holds now."""
    try:
        facts = directory.session_facts(request.user.get_username())
    except directory.DirectoryUnavailable:
        return  # the next request checks
    if facts is not None:
        request.session[PASSWORD_DIGEST] = facts.password_digest
        request.session[CHECKED_AT] = time.time()


def _mirror_roles(user: User, member_of: frozenset[str]) -> None:
    # Only the staff groups matter for roles; the sign-in backend mirrors the rest at sign-in.
    staff = {group_name(getattr(settings, setting)): getattr(settings, setting).lower() for setting in STAFF_GROUPS}
    held = set(user.groups.filter(name__in=staff).values_list("name", flat=True))
    for name, dn in staff.items():
        if dn in member_of and name not in held:
            user.groups.add(Group.objects.get_or_create(name=name)[0])
        elif dn not in member_of and name in held:
            user.groups.remove(*Group.objects.filter(name=name))
    # The role as mirrored just now: role_of need not read the groups again in this request.
    remember_role(user, {name for name, dn in staff.items() if dn in member_of})
