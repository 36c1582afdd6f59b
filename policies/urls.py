"""The Backup policies blade, included by ``vaults.urls`` (names under ``vaults:``) before its
catch-all blade route."""

from django.urls import path

from . import views

urlpatterns = [
    path("<str:name>/policies/", views.policy_list, name="policies"),
    path("<str:name>/policies/new/", views.policy_create, name="policy-create"),
    path("<str:name>/policies/<int:pk>/", views.policy_edit, name="policy-edit"),
    path("<str:name>/policies/<int:pk>/preview/", views.policy_preview, name="policy-preview"),
    path("<str:name>/policies/<int:pk>/delete/", views.policy_delete, name="policy-delete"),
]
