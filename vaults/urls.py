"""The vault pages under ``/vaults/`` (namespace ``vaults``): the list, a vault's blades and
their actions. The Backup policies blade's routes are the policies app's, included here."""

from django.urls import include, path

from .views import immutability, items, mua, replication, security, vault

app_name = "vaults"
urlpatterns = [
    path("", vault.vault_list, name="list"),
    path("new/", vault.vault_create, name="create"),
    path("<str:name>/", vault.vault_blade, name="detail"),
    # Properties
    path("<str:name>/delete/", vault.vault_delete, name="delete"),
    path("<str:name>/job-alerts/", vault.job_alerts_mute, name="job-alerts"),
    path("<str:name>/storage-lock/verify/", vault.lock_verify, name="lock-verify"),
    # Immutable vault
    path("<str:name>/immutability/change/", immutability.immutability_change, name="immutability"),
    path("<str:name>/immutability/lock/", immutability.immutability_lock, name="lock"),
    # Security settings
    path("<str:name>/soft-delete/", security.soft_delete_change, name="soft-delete"),
    path("<str:name>/soft-delete/always-on/", security.soft_delete_always_on, name="always-on"),
    path(
        "<str:name>/security/items/<int:pk>/undelete/",
        security.item_undelete,
        name="item-undelete",
    ),
    # Multi-user authorization
    path("<str:name>/resource-guard/", mua.guard_set, name="guard-set"),
    path("<str:name>/resource-guard/remove/", mua.guard_remove, name="guard-remove"),
    # Replication (SPEC 3.10)
    path("<str:name>/replication/pair/", replication.replica_set, name="replica-set"),
    path("<str:name>/replication/remove/", replication.replica_remove, name="replica-remove"),
    # Backup policies
    path("", include("policies.urls")),
    # Backup items and their recovery points
    path("<str:name>/items/", items.item_list, name="items"),
    path("<str:name>/items/new/", items.item_protect, name="item-protect"),
    path("<str:name>/items/<int:pk>/", items.item_detail, name="item"),
    path("<str:name>/items/<int:pk>/backup/", items.item_backup, name="item-backup"),
    path("<str:name>/items/<int:pk>/policy/", items.item_change_policy, name="item-policy"),
    path("<str:name>/items/<int:pk>/host/", items.item_change_host, name="item-host"),
    path(
        "<str:name>/items/<int:pk>/policy/preview/",
        items.item_policy_preview,
        name="item-policy-preview",
    ),
    path("<str:name>/items/<int:pk>/stop/", items.item_stop, name="item-stop"),
    path(
        "<str:name>/items/<int:pk>/points/<int:point_pk>/browse/",
        items.point_browse,
        name="point-browse",
    ),
    path(
        "<str:name>/items/<int:pk>/points/<int:point_pk>/download/",
        items.point_download,
        name="point-download",
    ),
    path("<str:name>/items/<int:pk>/resume/", items.item_resume, name="item-resume"),
    path(
        "<str:name>/items/<int:pk>/points/<int:point_pk>/delete/",
        items.point_delete,
        name="point-delete",
    ),
    path(
        "<str:name>/items/<int:pk>/points/<int:point_pk>/retain/",
        items.point_retain,
        name="point-retain",
    ),
    path(
        "<str:name>/items/<int:pk>/points/<int:point_pk>/drill/",
        items.point_drill,
        name="point-drill",
    ),
    # The catch-all blade route stays last.
    path("<str:name>/<str:blade>/", vault.vault_blade, name="blade"),
]
