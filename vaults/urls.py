from django.urls import include, path

from . import views

app_name = "vaults"
urlpatterns = [
    path("", views.vault_list, name="list"),
    path("new/", views.vault_create, name="create"),
    path("<str:name>/", views.vault_blade, name="detail"),
    path("<str:name>/immutability/change/", views.immutability_change, name="immutability"),
    path("<str:name>/immutability/lock/", views.immutability_lock, name="lock"),
    path("<str:name>/delete/", views.vault_delete, name="delete"),
    path("", include("policies.urls")),
    # The catch-all blade route stays last.
    path("<str:name>/<str:blade>/", views.vault_blade, name="blade"),
]
