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
    path("<str:name>/job-alerts/", views.job_alerts_mute, name="job-alerts"),
    path("<str:name>/storage-lock/verify/", views.lock_verify, name="lock-verify"),
    path("<str:name>/soft-delete/", views.soft_delete_change, name="soft-delete"),
    path("<str:name>/soft-delete/always-on/", views.soft_delete_always_on, name="always-on"),
    path(
        "<str:name>/security/items/<int:pk>/undelete/",
        views.item_undelete,
        name="item-undelete",
    ),
    path("<str:name>/resource-guard/", views.guard_set, name="guard-set"),
    path("<str:name>/resource-guard/remove/", views.guard_remove, name="guard-remove"),
    path("", include("policies.urls")),
    # The catch-all blade route stays last.
    path("<str:name>/<str:blade>/", views.vault_blade, name="blade"),
]
