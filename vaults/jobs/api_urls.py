"""The jobs endpoints under ``/api/v1/`` (SPEC 5)."""

from django.urls import path

from .api import (
    BackupView,
    DrillView,
    JobCancelView,
    JobDetail,
    JobList,
    LockVerifyView,
    RehydrateView,
    RestoreView,
    VerifyView,
)

urlpatterns = [
    path(
        "vaults/<str:name>/items/<str:item>/backup/",
        BackupView.as_view(),
        name="api-item-backup",
    ),
    path(
        "vaults/<str:name>/items/<str:item>/recovery-points/<int:pk>/restore/",
        RestoreView.as_view(),
        name="api-point-restore",
    ),
    path(
        "vaults/<str:name>/items/<str:item>/recovery-points/<int:pk>/verify/",
        VerifyView.as_view(),
        name="api-point-verify",
    ),
    path(
        "vaults/<str:name>/items/<str:item>/recovery-points/<int:pk>/drill/",
        DrillView.as_view(),
        name="api-point-drill",
    ),
    path(
        "vaults/<str:name>/items/<str:item>/recovery-points/<int:pk>/rehydrate/",
        RehydrateView.as_view(),
        name="api-point-rehydrate",
    ),
    path(
        "vaults/<str:name>/storage-lock/verify/",
        LockVerifyView.as_view(),
        name="api-vault-lock-verify",
    ),
    path("jobs/", JobList.as_view(), name="api-jobs"),
    path("jobs/<int:pk>/", JobDetail.as_view(), name="api-job"),
    path("jobs/<int:pk>/cancel/", JobCancelView.as_view(), name="api-job-cancel"),
]
