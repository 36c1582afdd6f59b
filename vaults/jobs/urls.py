"""The jobs pages, under ``/jobs/`` (namespace ``jobs``)."""

from django.urls import path

from .views import backup_start, job_detail, job_list, job_progress, restore_start

app_name = "jobs"
urlpatterns = [
    path("", job_list, name="list"),
    path("<int:pk>/", job_detail, name="detail"),
    path("<int:pk>/progress/", job_progress, name="progress"),
    path("items/<int:pk>/backup/", backup_start, name="backup"),
    path("points/<int:pk>/restore/", restore_start, name="restore"),
]
