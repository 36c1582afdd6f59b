"""A recovery point's restore and rehydration pages, under ``/jobs/points/<id>/``.

Restore writes the point (or files and folders chosen on its browse page) under one of the
allowed restore roots, as a job; an archived point offers rehydration first. Each calls one
gated service. Downloads start from the browse page (``vaults/views/items.py``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal import clock
from portal.forms import add_domain_error
from portal.gate import DomainError
from portal.roles import has_capability

from ..models import RecoveryPoint
from ..selectors import vaults_for_user
from ..workloads import postgres
from . import requests
from .forms import DatabaseRestoreForm, RehydrateForm, RestoreForm, restore_roots


def _point(request: HttpRequest, pk: int) -> RecoveryPoint:
    return get_object_or_404(
        RecoveryPoint.objects.select_related("vault", "item", "vault__resource_guard"),
        pk=pk,
        vault__in=vaults_for_user(request.user),
    )


def _paths(request: HttpRequest) -> list[str]:
    data = request.POST if request.method == "POST" else request.GET
    return [p for p in data.getlist("path") if p.strip()]


def _started(request: HttpRequest, job: Any) -> HttpResponse:
    if requests.job_waiting_for_queue(job):
        messages.warning(request, f"Job #{job.pk}: {job.error}")
    return redirect("jobs:detail", pk=job.pk)


def restore_start(request: HttpRequest, pk: int) -> HttpResponse:
    """The whole point, or the files and folders chosen (``path``), under an allowed root."""
    # The browse page posts its selection here without a root: show the form for it. A
    # restore itself goes to the gate whoever asks, so a reader's attempt is audited.
    choosing = request.method == "POST" and "root" not in request.POST
    if (request.method != "POST" or choosing) and not has_capability(request.user, "operate"):
        raise PermissionDenied("Your role does not allow restores.")
    point = _point(request, pk)
    if postgres.is_dump(point.workload):
        return _database_restore(request, point)
    paths = _paths(request)
    form = RestoreForm(
        request.POST if request.method == "POST" and not choosing else None,
        item_host=point.item.source_host if point.item else "",
    )
    status = 400 if form.is_bound else 200
    if form.is_bound and form.is_valid():
        try:
            job = requests.restore_request(
                actor=request.user,
                point=point,
                target_path=form.target_path,
                overwrite=form.cleaned_data["overwrite"],
                sub_paths=paths,
                target_host=form.cleaned_data["target_host"],
            )
        except DomainError as error:
            if error.code == "permission_denied":
                raise PermissionDenied(error.detail) from error
            if error.field == "target_path":  # the root and folder the person chose
                error.field = "folder"
            add_domain_error(form, error)
            status = error.http_status
        else:
            return _started(request, job)
    return render(request, "jobs/restore.html", _context(point, form, paths), status=status)


def _database_restore(request: HttpRequest, point: RecoveryPoint) -> HttpResponse:
    """A database dump restores whole into a new database named here."""
    bound = request.method == "POST" and "target_database" in request.POST
    form = DatabaseRestoreForm(
        request.POST if bound else None,
        item_host=point.item.source_host if point.item else "",
    )
    status = 400 if bound else 200
    if bound and form.is_valid():
        try:
            job = requests.restore_request(
                actor=request.user,
                point=point,
                target_database=form.cleaned_data["target_database"],
                target_host=form.cleaned_data["target_host"],
            )
        except DomainError as error:
            if error.code == "permission_denied":
                raise PermissionDenied(error.detail) from error
            add_domain_error(form, error)
            status = error.http_status
        else:
            return _started(request, job)
    return render(request, "jobs/restore.html", _context(point, form, []), status=status)


def _context(
    point: RecoveryPoint, form: RestoreForm | DatabaseRestoreForm, paths: list[str]
) -> dict[str, Any]:
    now = clock.now()
    return {
        "point": point,
        "form": form,
        "paths": paths,
        "roots": restore_roots(),
        "archived": point.is_archived and not point.is_rehydrated(now),
        "soft_deleted": point.is_expired(now),
        "rehydrate_form": RehydrateForm(),
        "workload": point.workload if postgres.is_dump(point.workload) else None,
        "now": now,
    }


@require_POST
def rehydrate_start(request: HttpRequest, pk: int) -> HttpResponse:
    point = _point(request, pk)
    form = RehydrateForm(request.POST)
    if form.is_valid():
        try:
            job = requests.rehydrate_request(actor=request.user, point=point, **form.cleaned_data)
        except DomainError as error:
            if error.code == "permission_denied":
                raise PermissionDenied(error.detail) from error
            add_domain_error(form, error)
        else:
            return _started(request, job)
    item_host = point.item.source_host if point.item else ""
    context = _context(point, RestoreForm(item_host=item_host), [])
    context["rehydrate_form"] = form
    return render(request, "jobs/restore.html", context, status=400)
