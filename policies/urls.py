"""The Backup policies and Backup items blades, included by ``vaults.urls`` (names under
``vaults:``) before its catch-all blade route."""

from django.urls import path

from . import views

urlpatterns = [
    path("<str:name>/policies/", views.policy_list, name="policies"),
    path("<str:name>/policies/new/", views.policy_create, name="policy-create"),
    path("<str:name>/policies/<int:pk>/", views.policy_edit, name="policy-edit"),
    path("<str:name>/policies/<int:pk>/preview/", views.policy_preview, name="policy-preview"),
    path("<str:name>/policies/<int:pk>/delete/", views.policy_delete, name="policy-delete"),
    path("<str:name>/items/", views.item_list, name="items"),
    path("<str:name>/items/new/", views.item_protect, name="item-protect"),
    path("<str:name>/items/<int:pk>/", views.item_detail, name="item"),
    path("<str:name>/items/<int:pk>/policy/", views.item_change_policy, name="item-policy"),
    path(
        "<str:name>/items/<int:pk>/policy/preview/",
        views.item_policy_preview,
        name="item-policy-preview",
    ),
    path("<str:name>/items/<int:pk>/stop/", views.item_stop, name="item-stop"),
    path(
        "<str:name>/items/<int:pk>/points/<int:point_pk>/browse/",
        views.point_browse,
        name="point-browse",
    ),
    path("<str:name>/items/<int:pk>/resume/", views.item_resume, name="item-resume"),
    path(
        "<str:name>/items/<int:pk>/points/<int:point_pk>/delete/",
        views.point_delete,
        name="point-delete",
    ),
    path(
        "<str:name>/items/<int:pk>/points/<int:point_pk>/retain/",
        views.point_retain,
        name="point-retain",
    ),
]
