"""The Hosts page, under ``/hosts/`` (SPEC 3.13)."""

from django.urls import path

from .views.hosts import host_list

urlpatterns = [path("", host_list, name="hosts")]
