from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from vaults.api import VaultViewSet

from . import api, views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("vaults", VaultViewSet, basename="vault")
router.register("approvals", api.ApprovalViewSet, basename="approval")
router.register("audit", api.AuditViewSet, basename="audit")

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz/", views.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("vaults/", include("vaults.urls")),
    path("approvals/", views.approval_list, name="approvals"),
    path("approvals/<int:pk>/<str:action>/", views.approval_decide, name="approval-decide"),
    path("audit/", views.audit_list, name="audit"),
    path("users/", views.user_list, name="users"),
    path("users/<int:pk>/", views.user_update, name="user-update"),
    path("admin/", admin.site.urls),
    path("api/v1/auth/token/", api.TokenView.as_view(), name="api-token"),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]
