"""The vaults app's endpoints under ``/api/v1/`` (SPEC 5): vaults, and under a vault its
protected items and their recovery points (explicit paths: no nested-router dependency).
The jobs endpoints are ``vaults/jobs/api_urls.py``; a vault's policies, the policies app's."""

from django.urls import path

from portal.api import api_router

from .api.hosts import HostList
from .api.items import ProtectedItemViewSet, RecoveryPointViewSet
from .api.replication import ReplicaViewSet
from .api.reports import ComplianceReportView
from .api.vault import VaultViewSet

router = api_router()
router.register("vaults", VaultViewSet, basename="vault")

_ITEM = "vaults/<str:name>/items/<str:item>/"
urlpatterns = [
    path(
        "vaults/<str:name>/items/",
        ProtectedItemViewSet.as_view({"get": "list", "post": "create"}),
        name="api-item-list",
    ),
    path(
        _ITEM,
        ProtectedItemViewSet.as_view({"get": "retrieve", "patch": "partial_update"}),
        name="api-item-detail",
    ),
    path(
        _ITEM + "stop-protection/",
        ProtectedItemViewSet.as_view({"post": "stop_protection"}),
        name="api-item-stop-protection",
    ),
    path(
        _ITEM + "resume/",
        ProtectedItemViewSet.as_view({"post": "resume"}),
        name="api-item-resume",
    ),
    path(
        _ITEM + "undelete/",
        ProtectedItemViewSet.as_view({"post": "undelete"}),
        name="api-item-undelete",
    ),
    path(
        _ITEM + "recovery-points/",
        RecoveryPointViewSet.as_view({"get": "list"}),
        name="api-point-list",
    ),
    path(
        _ITEM + "recovery-points/<int:id>/",
        RecoveryPointViewSet.as_view(
            {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
        ),
        name="api-point-detail",
    ),
    path(
        "vaults/<str:name>/replica/",
        ReplicaViewSet.as_view({"put": "update", "delete": "destroy"}),
        name="api-vault-replica",
    ),
    path("hosts/", HostList.as_view(), name="api-host-list"),
    path("reports/compliance/", ComplianceReportView.as_view(), name="api-reports-compliance"),
    *router.urls,
]
