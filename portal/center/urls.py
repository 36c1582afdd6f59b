"""The Backup center's pages (no namespace: ``home``, ``portfolio``, ``portfolio-tiles``,
``portfolio-export``, ``items``, ``dashboard``, ``reports``), and the monitor's answer on
the periodic work (``healthz-background``)."""

from django.urls import path

from . import health, reports, views

urlpatterns = [
    path("", views.portfolio, name="home"),
    path("backup-center/", views.portfolio, name="portfolio"),
    path("backup-center/tiles/", views.tiles, name="portfolio-tiles"),
    path("backup-center/export.csv", views.portfolio_export, name="portfolio-export"),
    path("items/", views.item_list, name="items"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("reports/", reports.reports_page, name="reports"),
    path("healthz/background/", health.background, name="healthz-background"),
]
