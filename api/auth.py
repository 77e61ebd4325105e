"""How each API finds the token in a request: `Authorization: Bearer …` (ours, addy.io's) or
SimpleLogin's `Authentication: …` header. Never a cookie: a browser's session is not accepted
on the API, so a page on another site cannot make the browser act with it (no CSRF hole).

The check itself is api.services.authenticate; this only adds the scope and the request's user.
Each API request talks to the directory over one connection (the token's owner, then whatever
the call checks), opened at its first directory call.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from ninja.security import APIKeyHeader, HttpBearer

from accounts import directory
from api import services
from api.models import ApiToken

READ_ONLY_REFUSAL = "This API token may only read aliases. Make a token that may manage them to change aliases."


def _admit(request: HttpRequest, raw: str, scope: str) -> ApiToken:
    request.user = AnonymousUser()  # whatever a session cookie said, it does not count here
    token = services.authenticate(request, raw.strip())
    if scope == ApiToken.Scope.MANAGE and not token.may_manage:
        raise services.ScopeRefused(READ_ONLY_REFUSAL)
    request.user = token.owner  # services record the audit events under the token's owner
    return token


class BearerToken(HttpBearer):
    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = scope

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        return _admit(request, token, self.scope)


class AuthenticationHeader(APIKeyHeader):
    """SimpleLogin's clients send the key alone in an `Authentication` header."""

    param_name = "Authentication"

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = scope

    def authenticate(self, request: HttpRequest, key: str | None) -> ApiToken | None:
        return _admit(request, key, self.scope) if key else None


def token_of(request: HttpRequest) -> ApiToken:
    token = getattr(request, "auth", None)
    assert isinstance(token, ApiToken)
    return token


def one_directory_connection(run: Callable[..., Any]) -> Callable[..., Any]:
    """For NinjaAPI.add_decorator(mode="view"): the whole call, token check included, on one
    directory connection, kept for the worker's next call (accounts.directory.one_connection)."""

    @wraps(run)
    def call(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        with directory.one_connection(keep=True):
            return run(request, *args, **kwargs)

    return call
