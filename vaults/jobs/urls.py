"""The jobs pages, under ``/jobs/`` (namespace ``jobs``)."""

from django.urls import path

from .point_views import rehydrate_start, restore_start
from .views import backup_start, job_cancel, job_detail, job_list, job_progress

app_name = "jobs"
urlpatterns = [
    path("", job_list, name="list"),
    path("<int:pk>/", job_detail, name="detail"),
    path("<int:pk>/progress/", job_progress, name="progress"),
    path("<int:pk>/cancel/", job_cancel, name="cancel"),
    path("items/<int:pk>/backup/", backup_start, name="backup"),
    path("points/<int:pk>/restore/", restore_start, name="restore"),
    path("points/<int:pk>/rehydrate/", rehydrate_start, name="rehydrate"),
]
