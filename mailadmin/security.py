"""Response headers that keep the browser from doing more than the app needs.

Django's SecurityMiddleware already sends Referrer-Policy, X-Content-Type-Options,
Cross-Origin-Opener-Policy and HSTS (from settings); this adds the Content Security Policy and
the Permissions-Policy, which Django does not cover, to every response, static files and error
pages included.
"""

from collections.abc import Callable

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
