"""The kernel's endpoints under ``/api/v1/`` (SPEC 5): API tokens, one's own password,
approvals, the audit log, users. Each app owns its API URL module the same way;
``portal/urls.py`` includes them."""

from django.urls import path

from .api import (
    ApprovalViewSet,
    AuditViewSet,
    PasswordChangeView,
    TokenView,
    UserViewSet,
    api_router,
)

router = api_router()
router.register("approvals", ApprovalViewSet, basename="approval")
router.register("audit", AuditViewSet, basename="audit")
router.register("users", UserViewSet, basename="user")

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="api-token"),
    path("auth/password/", PasswordChangeView.as_view(), name="api-password"),
    *router.urls,
]
