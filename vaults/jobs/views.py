"""Jobs pages: every job across vaults with live progress, cancelling one, the on-demand
backup form. Restores, rehydration and downloads of a point: ``point_views.py``.

Routed by ``vaults/jobs/urls.py``.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseStopPolling

from portal import clock
from portal.forms import add_domain_error
from portal.gate import DomainError
from portal.roles import has_capability

from ..hosts import job_waits
from ..models import Job, ProtectedItem
from ..selectors import jobs_for_user, vaults_for_user
from . import requests
from .filters import JobFilter
from .forms import BackupForm


def _apply_error(form: forms.Form, error: DomainError) -> None:
    if error.code == "permission_denied":
        raise PermissionDenied(error.detail) from error  # refused and audited by the gate
    add_domain_error(form, error)


def job_list(request: HttpRequest) -> HttpResponse:
    queryset = jobs_for_user(request.user).select_related("vault", "item", "requested_by")
    job_filter = JobFilter(request.GET, queryset=queryset)
    page = Paginator(job_filter.qs, 50).get_page(request.GET.get("page"))
    page.object_list = list(page.object_list)
    job_waits(page.object_list, clock.now())
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "jobs/list.html",
        {"filter": job_filter, "page": page, "query": query.urlencode()},
    )


def _job(request: HttpRequest, pk: int) -> Job:
    queryset = jobs_for_user(request.user).select_related(
        "vault", "item", "requested_by", "recovery_point"
    )
    job = get_object_or_404(queryset, pk=pk)
    job_waits([job], clock.now())
    return job


def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "jobs/detail.html", {"job": _job(request, pk)})


def job_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The progress partial htmx polls (``?view=card``: the job page's whole card, so Started,
    Ended and the recovery point fill in as the job ends); answers 286 (stop polling) once the
    job has ended."""
    job = _job(request, pk)
    template = "jobs/detail.html#card" if request.GET.get("view") == "card" else None
    response = render(request, template or "jobs/list.html#progress", {"job": job})
    if job.is_finished:
        return HttpResponseStopPolling(response.content)
    return response


@require_POST
def job_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Cancel a queued or running job; the refusal (a reader, an ended job) shows on the card."""
    job = _job(request, pk)
    try:
        job = requests.job_cancel(actor=request.user, job=job)
    except DomainError as error:
        if error.code == "permission_denied":
            raise PermissionDenied(error.detail) from error
        context = {"job": _job(request, pk), "cancel_refusal": error}
        if request.headers.get("HX-Request"):
            return render(request, "jobs/detail.html#card", context, status=error.http_status)
        return render(request, "jobs/detail.html", context, status=error.http_status)
    if request.headers.get("HX-Request"):
        return render(request, "jobs/detail.html#card", {"job": _job(request, pk)})
    notice = (
        "it ended before it started"
        if job.is_finished
        else "it stops at its next file boundary, keeping nothing half-done"
    )
    messages.success(request, f"Job #{job.pk} cancelled: {notice}.")
    return redirect("jobs:detail", pk=job.pk)


def _started(request: HttpRequest, job: Job) -> HttpResponse:
    """To the job's page; if the queue was down, the job waits there and the page says so."""
    if requests.job_waiting_for_queue(job):
        messages.warning(request, f"Job #{job.pk}: {job.error}")
    return redirect("jobs:detail", pk=job.pk)


def backup_start(request: HttpRequest, pk: int) -> HttpResponse:
    # The form is for operators; a POST goes to the gate either way, so it is audited.
    if request.method != "POST" and not has_capability(request.user, "operate"):
        raise PermissionDenied("Your role does not allow on-demand backups.")
    item = get_object_or_404(
        ProtectedItem.objects.select_related("vault", "policy"),
        pk=pk,
        vault__in=vaults_for_user(request.user),
    )
    form = BackupForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            job = requests.backup_request(
                actor=request.user, item=item, retain_until=form.cleaned_data["retain_until"]
            )
        except DomainError as error:
            _apply_error(form, error)
        else:
            return _started(request, job)
    return render(request, "jobs/backup.html", {"form": form, "item": item})
