"""How the person of this session proved who they are: the password alone, or with which
second factor and when. The mfa app writes it; actions that can hurt someone else ask for a
second factor given recently (`recent_second_factor`)."""

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode

SESSION_KEY = "second_factor"
PASSWORD_ONLY = "none"  # signed in without a second factor: the person has none, and needs none
METHODS = ("totp", "passkey", "recovery code", PASSWORD_ONLY)


@dataclass(frozen=True)
class Assurance:
    method: str
    at: float  # epoch seconds

    @property
    def second_factor(self) -> bool:
        return self.method != PASSWORD_ONLY

    def fresh(self, now: float | None = None) -> bool:
        age = (time.time() if now is None else now) - self.at
        return self.second_factor and 0 <= age <= settings.SECOND_FACTOR_MAX_AGE


def assurance_of(request: HttpRequest) -> Assurance | None:
    value = request.session.get(SESSION_KEY)
    if not isinstance(value, dict):
        return None
    method, at = value.get("method"), value.get("at")
    if method not in METHODS or not isinstance(at, float):
        return None
    return Assurance(method, at)


def record(request: HttpRequest, method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    request.session[SESSION_KEY] = {"method": method, "at": time.time()}


def recent_second_factor(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Before an action that can hurt someone else: a person who has a second factor gives it
    again when it is older than SECOND_FACTOR_MAX_AGE. Goes below the role decorators."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        assurance = assurance_of(request)
        if assurance is not None and assurance.second_factor and not assurance.fresh():
            if request.method == "POST":
                messages.info(request, "Nothing was done yet: confirm it is you, then do it again.")
            back = request.get_full_path() if request.method == "GET" else request.META.get("HTTP_REFERER", "")
            query = urlencode({"next": back}) if back else ""
            return redirect(f"{reverse('mfa:verify')}?{query}" if query else reverse("mfa:verify"))
        return view(request, *args, **kwargs)

    return wrapped
