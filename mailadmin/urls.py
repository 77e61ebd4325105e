from django.urls import include, path

from mailadmin import dashboard

urlpatterns = [
    path("", dashboard.home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("directory/", include("accounts.directory_urls")),
    path("aliases/", include("aliases.urls")),
    path("out-of-office/", include("outofoffice.urls")),
    path("handover/", include("handover.urls")),
    path("audit/", include("audit.urls")),
    path("second-factor/", include("mfa.urls")),
    path("bulk/", include("bulk.urls")),
    path("limits/", include("limits.urls")),
]
