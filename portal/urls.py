from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from guards.api import ResourceGuardViewSet
from policies.api import PolicyViewSet, ProtectedItemViewSet, RecoveryPointViewSet
from vaults.api import VaultViewSet

from . import api, portfolio, views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.include_format_suffixes = False
router.register("vaults", VaultViewSet, basename="vault")
router.register("approvals", api.ApprovalViewSet, basename="approval")
router.register("audit", api.AuditViewSet, basename="audit")
router.register("resource-guards", ResourceGuardViewSet, basename="resource-guard")
router.register("users", api.UserViewSet, basename="user")

# Resources under a vault (SPEC 5), as explicit paths: no nested-router dependency.
_ITEM = "vaults/<str:name>/items/<str:item>/"
vault_children = [
    path(
        "vaults/<str:name>/policies/",
        PolicyViewSet.as_view({"get": "list", "post": "create"}),
        name="api-policy-list",
    ),
    path(
        "vaults/<str:name>/policies/<str:policy>/",
        PolicyViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
        name="api-policy-detail",
    ),
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
]

urlpatterns = [
    path("", portfolio.portfolio, name="home"),
    path("backup-center/", portfolio.portfolio, name="portfolio"),
    path("backup-center/export.csv", portfolio.portfolio_export, name="portfolio-export"),
    path("items/", portfolio.item_list, name="items"),
    path("dashboard/", portfolio.dashboard, name="dashboard"),
    path("healthz/", views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("vaults/", include("vaults.urls")),
    path("account/two-factor/", views.two_factor, name="two-factor"),
    path("account/password/", views.password_change, name="password-change"),
    path("approvals/", views.approval_list, name="approvals"),
    path("approvals/<int:pk>/<str:action>/", views.approval_decide, name="approval-decide"),
    path("audit/", views.audit_list, name="audit"),
    path("alerts/", views.alert_list, name="alerts"),
    path("alerts/<int:pk>/<str:action>/", views.alert_action, name="alert-action"),
    path("resource-guards/", include("guards.urls")),
    path("users/", views.user_list, name="users"),
    path("users/<int:pk>/", views.user_update, name="user-update"),
    path(
        "users/<int:pk>/authenticator/remove/",
        views.user_authenticator_reset,
        name="user-authenticator-reset",
    ),
    path("admin/", admin.site.urls),
    path("api/v1/auth/token/", api.TokenView.as_view(), name="api-token"),
    path("api/v1/auth/password/", api.PasswordChangeView.as_view(), name="api-password"),
    path("api/v1/", include("vaults.job_api")),
    path("jobs/", include("vaults.job_views")),
    path("api/v1/", include(vault_children)),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]

# Under /api/ these answer {code, detail} like every other API error (SPEC 5).
handler400 = "portal.api.bad_request"
handler404 = "portal.api.not_found"
