"""The root URLconf: each room's URL modules, included by name, so this module imports no app.

Pages: the Backup center (``portal/center/urls.py``), the vaults (``vaults/urls.py``, which
includes the policies blade's ``policies/urls.py``), the jobs (``vaults/jobs/urls.py``), the
Resource Guards (``guards/urls.py``) and the kernel's own (approvals, audit, alerts, users,
below). API under ``/api/v1/``: each app's ``api_urls.py`` and the kernel's
(``portal/api_urls.py``).
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import views

urlpatterns = [
    path("", include("portal.center.urls")),
    path("healthz/", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("vaults/", include("vaults.urls")),
    path("account/two-factor/", views.two_factor, name="two-factor"),
    path("account/password/", views.password_change, name="password-change"),
    path("approvals/", views.approval_list, name="approvals"),
    path("approvals/<int:pk>/", views.approval_detail, name="approval-page"),
    path("approvals/<int:pk>/<str:action>/", views.approval_decide, name="approval-decide"),
    path("header-counts/", views.header_counts, name="header-counts"),
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
    path("jobs/", include("vaults.jobs.urls")),
    path("hosts/", include("vaults.host_urls")),
    path("api/v1/", include("vaults.jobs.api_urls")),
    path("api/v1/", include("policies.api_urls")),
    path("api/v1/", include("vaults.api_urls")),
    path("api/v1/", include("guards.api_urls")),
    path("api/v1/", include("portal.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]

# Under /api/ these answer {code, detail} like every other API error (SPEC 5).
handler400 = "portal.api.bad_request"
handler404 = "portal.api.not_found"
