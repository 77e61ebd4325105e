from django.urls import path

from aliases import publication_views, views

app_name = "aliases"
urlpatterns = [
    path("", views.alias_list, name="list"),
    path("new/<slug:kind>/", views.alias_create, name="create"),
    path("<int:pk>/", views.alias_detail, name="detail"),
    path("<int:pk>/disable/", views.alias_disable, name="disable"),
    path("<int:pk>/enable/", views.alias_enable, name="enable"),
    path("<int:pk>/delete/", views.alias_delete, name="delete"),
    path("selected/", views.alias_bulk, name="bulk"),
    path("domains/", views.domain_list, name="domains"),
    path("domains/new/", views.domain_create, name="domain_create"),
    path("domains/<int:pk>/", views.domain_edit, name="domain_edit"),
    path("domains/<int:pk>/delete/", views.domain_delete, name="domain_delete"),
    path("publication/", publication_views.publication_status, name="publication"),
    path("publication/publish/", publication_views.publication_publish, name="publication_publish"),
]
