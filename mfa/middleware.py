"""The second-factor policy, for every request of a web session.

- A password just accepted (the sign-in view has logged the person in during this request):
  if they have a second factor, or their role needs one, the login is undone before the
  response leaves and the visitor becomes "pending" (mfa/pending.py): the next page asks for
  the factor, or for enrolment.
- A signed-in session that gave no second factor while the role now needs one (promoted in
  LDAP, seen by accounts.session_check; or a session from before this policy): the same.
- A pending visitor reaches the second-factor pages, the sign-in page and sign-out; every other
  URL redirects to the second-factor page.

Only web sessions: a request without a session cookie (a script) is untouched, and so is every
request to the token-only API paths (mailadmin.security.TOKEN_ONLY_PREFIX), cookie or not.
"""

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import Resolver404, resolve

from accounts import assurance
from mailadmin.security import is_token_only
from mfa import pending, services

OPEN_TO_PENDING = frozenset(
    {"mfa:verify", "mfa:enrol", "mfa:totp_add", "mfa:passkey_add", "accounts:login", "accounts:logout"}
)


def _local(url: str) -> str:
    return url if url.startswith("/") and not url.startswith("//") and "\\" not in url else ""


class SecondFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_token_only(request):
            return self.get_response(request)
        user = request.user
        signed_in = isinstance(user, User) and user.is_authenticated
        if signed_in:
            assert isinstance(user, User)
            held = self._enforce(request, user, request.get_full_path() if request.method == "GET" else "")
            if held is not None:
                return held
        elif pending.PENDING_KEY in request.session and not self._open_to_pending(request):
            if pending.pending_of(request) is not None:
                return redirect("mfa:verify")
        response = self.get_response(request)
        # A sign-in happened in this request: the password alone does not leave as a session.
        if not signed_in and isinstance(request.user, User) and request.user.is_authenticated:
            if assurance.assurance_of(request) is None:
                location = response.get("Location", "") if response.status_code in (301, 302, 303) else ""
                held = self._enforce(request, request.user, _local(location))
                if held is not None:
                    return held
        return response

    @staticmethod
    def _open_to_pending(request: HttpRequest) -> bool:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return True  # a 404 is all they get
        return match.view_name in OPEN_TO_PENDING

    @staticmethod
    def _enforce(request: HttpRequest, user: User, next_url: str) -> HttpResponse | None:
        current = assurance.assurance_of(request)
        if current is not None and current.second_factor:
            return None
        required = services.required_for(user)
        if current is not None and not required:
            return None  # signed in with the password only, and the role needs no more
        if current is None and not required and not services.has_second_factor(user):
            assurance.record(request, assurance.PASSWORD_ONLY)
            return None
        if current is not None:
            messages.info(request, "Your role now needs a second factor. Please give it (or set one up) to go on.")
        pending.hold(request, user, next_url)
        return redirect("mfa:verify")
