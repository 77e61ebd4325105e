"""Response headers that keep the browser from doing more than the app needs.

Django's SecurityMiddleware already sends Referrer-Policy, X-Content-Type-Options,
Cross-Origin-Opener-Policy and HSTS (from settings); this adds the Content Security Policy and
the Permissions-Policy, which Django does not cover, to every response, static files and error
pages included.
"""

import ipaddress
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

# No inline script or style anywhere: templates load static/js and static/css only, so a value
# a user managed to get into a page cannot run. Forms post only back to the app.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    )
)
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "camera",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "payment",
        "usb",
    )
)


def security_headers(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        # Django sends these too when its settings say so; keep them even if someone turns those off.
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    return middleware


def client_address_from_proxy(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Behind a reverse proxy, REMOTE_ADDR is the proxy: every client would share one address
    and one sign-in throttle. Only when the peer is a trusted proxy, take the nearest address
    that proxy appended to X-Forwarded-For; a client's own X-Forwarded-For is never believed."""
    trusted = set(settings.TRUSTED_PROXIES)

    def middleware(request: HttpRequest) -> HttpResponse:
        if trusted and request.META.get("REMOTE_ADDR") in trusted:
            hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
            for hop in reversed(hops):
                if hop in trusted:
                    continue
                try:
                    request.META["REMOTE_ADDR"] = str(ipaddress.ip_address(hop))
                except ValueError:
                    pass  # garbage from the client side: keep the proxy's address
                break
        return get_response(request)

    return middleware


# The alias API (api/) authenticates by personal token only. Under this prefix no session
# cookie is ever accepted (so no CSRF hole), and the web session's directory re-check and the
# second-factor policy stay out of the way: a token is checked against LDAP on every request.
TOKEN_ONLY_PREFIX = "/api/"


def is_token_only(request: HttpRequest) -> bool:
    return request.path_info.startswith(TOKEN_ONLY_PREFIX)
