from django.urls import path

from . import views

urlpatterns = [
    path("", views.guard_list, name="guards"),
    path("elevations/<int:pk>/release/", views.elevation_release, name="elevation-release"),
    path("<str:name>/", views.guard_detail, name="guard-detail"),
    path("<str:name>/operations/", views.guard_update, name="guard-update"),
    path("<str:name>/delete/", views.guard_delete, name="guard-delete"),
    path("<str:name>/access/", views.access_request, name="guard-access"),
]
