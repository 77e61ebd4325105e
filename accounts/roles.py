"""Roles come from LDAP group membership, mirrored into Django groups at sign-in.

Who may act on whom is decided here and nowhere else (`refusal`, `may_act_on`): helpdesk acts
on end users only, admins on anyone, except on themselves where that makes no sense.
"""

from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from functools import wraps
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render

from accounts import directory
from accounts.backends import group_name
from accounts.forms import UNAVAILABLE

# A view's response: a page, or a streamed one (the audit log's CSV export).
_Response = TypeVar("_Response", bound=HttpResponseBase)


class Role(StrEnum):
    END_USER = "end user"
    HELPDESK = "helpdesk"
    ADMIN = "admin"


class Action(StrEnum):
    """What a member of staff does to another person."""

    VACATION = "vacation"  # see, set, clear or preview their vacation reply
    RESET_PASSWORD = "reset password"
    DISABLE = "disable"
    SUSPEND = "suspend"
    REINSTATE = "reinstate"
    RESET_SECOND_FACTOR = "reset second factor"  # remove their TOTP, passkeys and recovery codes
    REVOKE_API_TOKEN = "revoke API token"  # stop one of their personal API tokens (api/)


# What each staff role may do to someone else (helpdesk only to end users, see refusal()).
ALLOWED_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.HELPDESK: frozenset({Action.VACATION, Action.RESET_SECOND_FACTOR}),
    Role.ADMIN: frozenset(Action),
}
# Actions an admin may not take on themselves: locking oneself out, lifting one's own
# suspension, or setting one's own password without giving the current one.
SELF_REFUSALS: dict[Action, str] = {
    Action.SUSPEND: "You cannot suspend your own account.",
    Action.DISABLE: "You cannot disable your own account.",
    Action.REINSTATE: "You cannot lift your own suspension; another admin can.",
    Action.RESET_PASSWORD: "Change your own password on the Password page; it asks for the current one.",
    Action.RESET_SECOND_FACTOR: "Manage your own second factor on the Second factor page.",
}


def role_of(user: Any) -> Role | None:
    if not getattr(user, "is_authenticated", False):
        return None
    cached = getattr(user, "_mailadmin_role", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    # The request's user comes with its staff groups (accounts.backends); any other is asked.
    held = getattr(user, "staff_groups", None)
    remember_role(user, held if held is not None else set(user.groups.values_list("name", flat=True)))
    return user._mailadmin_role  # type: ignore[no-any-return]


def remember_role(user: Any, names: Collection[str]) -> None:
    """For role_of: the role of a user whose groups were just read (these names)."""
    user._mailadmin_role = role_of_groups(names)


def role_of_groups(names: Collection[str]) -> Role:
    """The role of someone in these (Django) groups."""
    if group_name(settings.LDAP_ADMIN_GROUP_DN) in names:
        return Role.ADMIN
    if group_name(settings.LDAP_HELPDESK_GROUP_DN) in names:
        return Role.HELPDESK
    return Role.END_USER


@dataclass(frozen=True)
class DirectoryRoles:
    """The staff groups as the directory has them now: the roles of people who are not
    signed in (the targets of an action), read in two searches for a whole page."""

    admins: frozenset[str]
    helpdesk: frozenset[str]

    def of(self, uid: str) -> Role:
        if uid in self.admins:
            return Role.ADMIN
        if uid in self.helpdesk:
            return Role.HELPDESK
        return Role.END_USER


def directory_roles() -> DirectoryRoles:
    return DirectoryRoles(
        admins=frozenset(directory.group_member_uids(settings.LDAP_ADMIN_GROUP_DN)),
        helpdesk=frozenset(directory.group_member_uids(settings.LDAP_HELPDESK_GROUP_DN)),
    )


def refusal(actor: Any, target_uid: str, action: Action, roles: DirectoryRoles | None = None) -> str | None:
    """Why `actor` (a signed-in user) may not take `action` on the person `target_uid`, or None
    if they may. `roles` saves the directory reads when deciding for many targets."""
    role = role_of(actor)
    if role is None or action not in ALLOWED_ACTIONS.get(role, frozenset()):
        return "Your role does not allow this."
    if target_uid == actor.get_username():
        if role == Role.ADMIN:
            return SELF_REFUSALS.get(action)
        return "Use your own pages for your own account."
    if role == Role.ADMIN:
        return None
    target_role = (roles or directory_roles()).of(target_uid)
    if target_role != Role.END_USER:
        return f"{target_uid} is {target_role}: only an admin can do this for them."
    return None


def may_act_on(actor: Any, target_uid: str, action: Action, roles: DirectoryRoles | None = None) -> bool:
    return refusal(actor, target_uid, action, roles) is None


def role_required(*roles: Role) -> Callable[[Callable[..., _Response]], Callable[..., _Response]]:
    """Signed in, and holding one of these roles; anything else is 403."""

    def decorator(view: Callable[..., _Response]) -> Callable[..., _Response]:
        @wraps(view)
        @login_required
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> _Response:
            if role_of(request.user) not in roles:
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def acts_on(action: Action) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """For a view taking the target's `uid`: 403 with the reason unless the signed-in user may
    take this action on that person. Goes below role_required (anonymous visitors sign in first)."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, uid: str, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                reason = refusal(request.user, uid, action)
            except directory.DirectoryUnavailable:
                return render(request, "accounts/directory_unavailable.html", {"message": UNAVAILABLE}, status=503)
            if reason is not None:
                return render(request, "accounts/refused.html", {"message": reason}, status=403)
            return view(request, uid, *args, **kwargs)

        return wrapped

    return decorator


staff_required = role_required(Role.HELPDESK, Role.ADMIN)
admin_required = role_required(Role.ADMIN)


def role_context(request: HttpRequest) -> dict[str, object]:
    role = role_of(request.user)
    return {
        "role": role,
        "is_admin": role == Role.ADMIN,
        "is_staff_role": role in (Role.HELPDESK, Role.ADMIN),
    }
