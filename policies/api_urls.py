"""The policy endpoints under ``/api/v1/vaults/{name}/policies/`` (SPEC 5), as explicit paths:
no nested-router dependency."""

from django.urls import path

from .api import PolicyViewSet

urlpatterns = [
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
]
