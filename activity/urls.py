from django.urls import path

from activity import views

app_name = "activity"
urlpatterns = [
    path("blocks/", views.blocks, name="blocks"),
    path("blocks/<int:pk>/delete/", views.unblock, name="unblock"),
    path("aliases/<int:pk>/block/", views.alias_block, name="alias_block"),
    path("leaks/<int:pk>/dismiss/", views.leak_dismiss, name="leak_dismiss"),
    path("leaks/<int:pk>/block/", views.leak_block, name="leak_block"),
    path("organisation/", views.organisation, name="organisation"),
    path("organisation/<int:pk>/delete/", views.organisation_unblock, name="organisation_unblock"),
]
