"""Show dates in the viewer's time zone.

The browser tells us its zone: static/js/mailadmin.js stores Intl's zone name in the `tz`
cookie. A valid IANA name is activated for the request; anything else (no JavaScript yet,
a forged or unknown value) falls back to settings.TIME_ZONE. Dates are stored in UTC.
"""

import zoneinfo
from collections.abc import Callable
from functools import lru_cache

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

COOKIE_NAME = "tz"


@lru_cache(maxsize=256)
def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    # Cached: each lookup may read a tzdata file; only valid names are cached as zones.
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def viewer_zone(request: HttpRequest) -> zoneinfo.ZoneInfo | None:
    return _zone(request.COOKIES.get(COOKIE_NAME, ""))


class TimezoneMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = viewer_zone(request)
        if zone is None:
            timezone.deactivate()
        else:
            timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
