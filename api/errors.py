"""Errors of the APIs as JSON a person can read: the message the web form would show, and per
field the form's messages. Each API (ours, SimpleLogin's, addy.io's) shapes the body as its
clients read it; the statuses and messages are the same everywhere."""

from collections.abc import Callable
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from accounts import directory
from accounts.forms import UNAVAILABLE
from api import services
from api.alias_calls import Refused

NO_TOKEN = "Send your mailadmin API token (make one on the API tokens page)."
NOT_FOUND = "No such alias."


def _fields_of(exc: ValidationError) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for error in exc.errors:
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "payload")]
        fields.setdefault(location[-1] if location else "non_field", []).append(str(error.get("msg", "Invalid.")))
    return fields


# Body shape: (message, fields, status) -> JSON body.
Shape = Callable[[str, dict[str, list[str]], int], dict[str, Any]]


def refusal(exc: Exception) -> tuple[str, int, dict[str, list[str]], dict[str, str]]:
    """(message, status, fields, headers) for an exception raised while answering an API call."""
    if isinstance(exc, services.TokenRefused):
        if isinstance(exc, services.AccountSuspended):
            return str(exc), 403, {}, {}
        return str(exc), 401, {}, {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, services.ScopeRefused):
        return str(exc), 403, {}, {}
    if isinstance(exc, services.RateLimited):
        return str(exc), 429, {}, {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, directory.DirectoryUnavailable):
        return UNAVAILABLE, 503, {}, {}
    if isinstance(exc, services.RateLimiterDown):
        return str(exc), 503, {}, {"Retry-After": "30"}
    if isinstance(exc, Refused):
        return exc.message, exc.status, exc.fields, {}
    if isinstance(exc, ValidationError):
        fields = _fields_of(exc)
        name, messages = next(iter(fields.items()))
        return (f"{name}: {messages[0]}" if name != "non_field" else messages[0]), 400, fields, {}
    if isinstance(exc, AuthenticationError):
        return NO_TOKEN, 401, {}, {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, HttpError):
        return exc.message, exc.status_code, {}, {}
    if isinstance(exc, Http404):
        return NOT_FOUND, 404, {}, {}
    raise exc


HANDLED = (
    services.TokenRefused,
    services.ScopeRefused,
    services.RateLimited,
    services.RateLimiterDown,
    directory.DirectoryUnavailable,
    Refused,
    ValidationError,
    AuthenticationError,  # ninja's own handlers are looked up by the exact class first
    HttpError,
    Http404,
)


def install(api: NinjaAPI, shape: Shape) -> None:
    """Register the handler that turns every refusal into `shape`'s JSON."""

    def handle(request: HttpRequest, exc: Exception | type[Exception]) -> HttpResponse:
        message, status, fields, headers = refusal(exc if isinstance(exc, Exception) else exc())
        response = JsonResponse(shape(message, fields, status), status=status)
        for name, value in headers.items():
            response[name] = value
        return response

    for exception in HANDLED:
        api.add_exception_handler(exception, handle)
