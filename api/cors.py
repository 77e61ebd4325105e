"""CORS for the calls a password manager's browser extension makes, and nowhere else.

Only the SimpleLogin- and addy.io-compatible creation calls (api/compat.py) answer a
cross-origin request, and only from a browser extension's origin (Bitwarden's in the Chrome
and Edge stores; Firefox and Safari give each installed extension a random id, so any of
theirs) or an origin listed in MAILADMIN_API_CORS_ORIGINS (a self-hosted web vault). Nothing is
allowed with credentials: the API reads tokens from headers and never a cookie.
"""

import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

EXTENSION_CALLS = re.compile(r"\A/api/(?:alias/random/new|v3/alias/random/new|v5/alias/options|v1/aliases)\Z")
EXTENSION_ORIGINS = (
    re.compile(r"\Achrome-extension://(?:nngceckbapebfimnlniiiahkandclblb|jbkfoedolllekgbhcbcoahefnbanhhlh)\Z"),
    re.compile(r"\Amoz-extension://[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z"),
    re.compile(r"\Asafari-web-extension://[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}\Z"),
)
ALLOWED_HEADERS = "Authentication, Authorization, Content-Type, Accept, X-Requested-With"
ALLOWED_METHODS = "GET, POST, OPTIONS"


def allowed_origin(origin: str) -> bool:
    return origin in settings.API_CORS_ORIGINS or any(pattern.match(origin) for pattern in EXTENSION_ORIGINS)


def extension_cors(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        origin = request.headers.get("Origin", "")
        if not origin or not EXTENSION_CALLS.match(request.path_info) or not allowed_origin(origin):
            return get_response(request)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response = HttpResponse(status=204)
            response["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response["Access-Control-Max-Age"] = "600"
        else:
            response = get_response(request)
        response["Access-Control-Allow-Origin"] = origin
        response["Vary"] = "Origin"
        return response

    return middleware
