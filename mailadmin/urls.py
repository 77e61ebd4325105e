from django.urls import include, path

from api import compat, endpoints
from console import home

urlpatterns = [
    path("", home.home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("directory/", include("console.directory_urls")),
    path("aliases/", include("aliases.urls")),
    path("out-of-office/", include("outofoffice.urls")),
    path("handover/", include("handover.urls")),
    path("audit/", include("console.audit_urls")),
    path("second-factor/", include("mfa.urls")),
    path("limits/", include("limits.urls")),
    path("trail/", include("trail.urls")),
    path("explain/", include("explain.urls")),
    path("activity/", include("activity.urls")),
    # The alias API (token only, mailadmin.security.TOKEN_ONLY_PREFIX) and its token pages.
    path("api/mailadmin/", endpoints.api.urls),
    path("api/v1/", compat.addy.urls),
    path("api/", compat.simplelogin.urls),
    path("tokens/", include("api.urls")),
    path("bulk/", include("bulk.urls")),
]
