"""Roles come from LDAP group membership, mirrored into Django groups at sign-in."""

from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse


class Role(StrEnum):
    END_USER = "end user"
    HELPDESK = "helpdesk"
    ADMIN = "admin"


def group_name(group_dn: str) -> str:
    """The Django group django-auth-ldap mirrors for an LDAP group: its cn."""
    return group_dn.split(",", 1)[0].split("=", 1)[1]


def role_of(user: Any) -> Role | None:
    if not getattr(user, "is_authenticated", False):
        return None
    cached = getattr(user, "_mailadmin_role", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    names = set(user.groups.values_list("name", flat=True))
    if group_name(settings.LDAP_ADMIN_GROUP_DN) in names:
        role = Role.ADMIN
    elif group_name(settings.LDAP_HELPDESK_GROUP_DN) in names:
        role = Role.HELPDESK
    else:
        role = Role.END_USER
    user._mailadmin_role = role
    return role


def role_required(*roles: Role) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Signed in, and holding one of these roles; anything else is 403."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        @login_required
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if role_of(request.user) not in roles:
                raise PermissionDenied
            return view(request, *args, **kwargs)

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
