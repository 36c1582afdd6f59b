"""The Backup items blade (SPEC 3.7): a vault's protected items, protecting a directory, an
item's recovery points (delete, retain, browse, drill) and its last restore drill, moving an
item to another policy (with its preview), stopping and resuming protection.

Every write calls one service; a ``validation_error`` lands on the form field it names and
any other refusal is shown where the person acted, with the refusal's HTTP status.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count
from django.db.models.fields.json import KeyTextTransform
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from policies import services as policy_services
from policies.previews import preview_context
from portal import clock
from portal.forms import add_domain_error, refusal_context
from portal.gate import DomainError
from portal.http import HtmxHttpRequest

from .. import selectors, services
from ..blades import render_blade
from ..forms import (
    ChangePolicyForm,
    ItemHostForm,
    ProtectForm,
    RetainUntilForm,
    StopProtectionForm,
)
from ..hosts import job_waits
from ..jobs import requests as job_requests
from ..jobs.forms import BackupForm
from ..models import ProtectedItem, RecoveryPoint, Vault
from ..selectors import get_vault_for_user
from ..storage import StorageError

ITEM_SORTS = {
    "name", "-name", "policy__name", "-policy__name", "protection_state", "-protection_state",
    "last_backup_at", "-last_backup_at", "point_count", "-point_count",
}  # fmt: skip


def _item(vault: Vault, pk: int) -> ProtectedItem:
    return get_object_or_404(
        vault.items.select_related("policy", "vault", "vault__resource_guard"), pk=pk
    )


def _point(item: ProtectedItem, pk: int) -> RecoveryPoint:
    return get_object_or_404(item.recovery_points.select_related("vault", "item"), pk=pk)


def _item_page(
    request: HtmxHttpRequest, vault: Vault, item: ProtectedItem, **extra: Any
) -> HttpResponse:
    points = item.recovery_points.order_by("-created_at", "-pk")
    now = clock.now()
    jobs = item.jobs.select_related("requested_by", "recovery_point").order_by("-created_at", "-pk")
    page = Paginator(points, 25).get_page(request.GET.get("page"))
    for point in page:
        # The gate's own test (point_not_protected): the page says before the click what the
        # gate would refuse, and the point's vault is this one (no query per point).
        point.vault = vault
        point.delete_protected = point.is_protected(now)  # type: ignore[attr-defined]
    item_jobs = list(jobs[:10])
    job_waits(item_jobs, now)  # "waiting for host ..." on a queued job of an offline host
    context = {
        "item": item,
        "points": page,
        "now": now,
        "rpo": selectors.item_rpo(item, now),
        "last_drill": _last_drill(item),
        "item_jobs": item_jobs,
        "backup_form": BackupForm(),
        "change_form": ChangePolicyForm(item=item),
        "host_form": ItemHostForm(initial={"host": item.source_host}),
        "stop_form": StopProtectionForm(),
        **extra,
    }
    return render_blade(request, vault, "items", **context)


def _last_drill(item: ProtectedItem) -> dict[str, Any] | None:
    """The item's latest restore drill, as recorded on its point (``RecoveryPoint.drill``)."""
    point = (
        item.recovery_points.filter(drill__isnull=False)
        .order_by(KeyTextTransform("at", "drill").desc(), "-pk")
        .first()
    )
    if point is None or not isinstance(point.drill, dict):
        return None
    return {**point.drill, "at": datetime.fromisoformat(point.drill["at"]), "point": point}


def item_list(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    sort = request.GET.get("sort", "name")
    host = request.GET.get("host", "").strip()
    items = (
        vault.items.select_related("policy")
        .annotate(point_count=Count("recovery_points"))
        .order_by(sort if sort in ITEM_SORTS else "name", "pk")
    )
    if host:  # the items read on one host (SPEC 3.13)
        items = items.filter(source_host=host)
    page = Paginator(items, 25).get_page(request.GET.get("page"))
    params = {"sort": sort} if sort in ITEM_SORTS else {}
    query = urlencode({**params, "host": host} if host else params)
    return render_blade(request, vault, "items", page=page, sort=sort, query=query, host=host)


def item_protect(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    form = ProtectForm(request.POST or None, vault=vault)
    extra: dict[str, Any] = {"form": form}
    if request.method == "POST" and form.is_valid():
        try:
            item = services.item_protect(actor=request.user, vault=vault, **form.cleaned_data)
        except DomainError as error:
            extra.update(refusal_context(form, error, "refusal"), status=error.http_status)
        else:
            messages.success(request, f"{item.name} is now protected by policy {item.policy.name}.")
            return redirect("vaults:item", name=vault.name, pk=item.pk)
    return render_blade(request, vault, "items", **extra)


def item_detail(request: HtmxHttpRequest, name: str, pk: int) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    return _item_page(request, vault, _item(vault, pk))


def point_browse(
    request: HtmxHttpRequest,
    name: str,
    pk: int,
    point_pk: int,
    *,
    download_refusal: DomainError | None = None,
) -> HttpResponse:
    """Browse a recovery point's files; choose some to restore (the jobs' restore form) or
    download (:func:`point_download`)."""
    vault = get_vault_for_user(request.user, name)
    item = _item(vault, pk)
    point = _point(item, point_pk)
    path = (request.GET.get("path") or request.POST.get("folder") or "").strip("/")
    try:
        entries = selectors.point_browse(point, path)
        error = ""
    except (StorageError, ValueError) as exc:
        entries, error = [], str(exc)
    parts = [p for p in path.split("/") if p]
    crumbs = [("/".join(parts[: i + 1]), part) for i, part in enumerate(parts)]
    context = {
        "vault": vault,
        "item": item,
        "point": point,
        "path": path,
        "crumbs": crumbs,
        "entries": [
            {**vars(e), "modified": datetime.fromtimestamp(e.mtime, UTC)}
            for e in sorted(entries, key=lambda e: (e.kind != "dir", e.name))
        ],
        "error": error,
        "download_refusal": download_refusal,
        "selected": set(request.POST.getlist("path")),
        "now": clock.now(),
        "download_limit": services.downloads.download_limit(),
    }
    status = download_refusal.http_status if download_refusal else 404 if error else 200
    return render(request, "vaults/point_browse.html", context, status=status)


@require_POST
def point_download(
    request: HtmxHttpRequest, name: str, pk: int, point_pk: int
) -> HttpResponse | StreamingHttpResponse:
    """Stream the chosen file as it is, or a zip of the selection; a refusal (a reader, a path
    the point does not hold, over the size limit) shows on the browse page, nothing sent."""
    vault = get_vault_for_user(request.user, name)
    point = _point(_item(vault, pk), point_pk)
    paths = [p for p in request.POST.getlist("path") if p.strip()]
    try:
        download = services.point_download(actor=request.user, point=point, paths=paths)
    except DomainError as error:
        return point_browse(request, name, pk, point_pk, download_refusal=error)
    response = StreamingHttpResponse(
        download.chunks(),
        content_type="application/zip" if download.is_zip else "application/octet-stream",
    )
    ascii_name = download.filename.encode("ascii", "replace").decode()
    ascii_name = ascii_name.replace('"', "_").replace("?", "_").replace("\\", "_")
    response["Content-Disposition"] = (
        f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(download.filename)}"
    )
    if not download.is_zip:
        response["Content-Length"] = str(download.selection.total_bytes)
    return response


@require_POST
def item_backup(request: HtmxHttpRequest, name: str, pk: int) -> HttpResponse:
    """Back up now from the item page; a refusal shows in the Back up now card."""
    vault = get_vault_for_user(request.user, name)
    item = _item(vault, pk)
    form = BackupForm(request.POST)
    if form.is_valid():
        try:
            job = job_requests.backup_request(
                actor=request.user, item=item, retain_until=form.cleaned_data["retain_until"]
            )
        except DomainError as error:
            if error.code == "permission_denied":
                raise PermissionDenied(error.detail) from error
            add_domain_error(form, error)
            return _item_page(request, vault, item, backup_form=form, status=error.http_status)
        if job_requests.job_waiting_for_queue(job):
            messages.warning(request, f"Job #{job.pk}: {job.error}")
        return redirect("jobs:detail", pk=job.pk)
    return _item_page(request, vault, item, backup_form=form, status=400)


@require_POST
def item_change_policy(request: HtmxHttpRequest, name: str, pk: int) -> HttpResponse:
    """Move an item to another policy; "Preview" shows the effect first, as on a policy."""
    vault = get_vault_for_user(request.user, name)
    item = _item(vault, pk)
    form = ChangePolicyForm(request.POST, item=item)
    extra: dict[str, Any] = {"change_form": form}
    if form.is_valid() and request.POST.get("action") == "save":
        policy = form.cleaned_data["policy"]
        try:
            policy_services.item_change_policy(actor=request.user, item=item, policy=policy)
        except DomainError as error:
            extra.update(refusal_context(form, error, "change_refusal"), status=error.http_status)
        else:
            messages.success(request, f"{item.name} now uses policy {policy.name}.")
            return redirect("vaults:item", name=vault.name, pk=item.pk)
    extra.update(_change_preview(request, item, form))
    return _item_page(request, vault, item, **extra)


@require_POST
def item_change_host(request: HtmxHttpRequest, name: str, pk: int) -> HttpResponse:
    """Read the item's source on another host (SPEC 3.13), through the gate."""
    vault = get_vault_for_user(request.user, name)
    item = _item(vault, pk)
    form = ItemHostForm(request.POST)
    extra: dict[str, Any] = {"host_form": form}
    if form.is_valid():
        host = form.cleaned_data["host"]
        try:
            services.item_host_set(actor=request.user, item=item, host=host)
        except DomainError as error:
            extra.update(refusal_context(form, error, "host_refusal"), status=error.http_status)
        else:
            messages.success(request, f"{item.name} is now read on {host or 'any host'}.")
            return redirect("vaults:item", name=vault.name, pk=item.pk)
    else:
        extra["status"] = 400
    return _item_page(request, vault, item, **extra)


def _change_preview(
    request: HtmxHttpRequest, item: ProtectedItem, form: ChangePolicyForm
) -> dict[str, Any]:
    if not form.is_valid():
        return {}
    policy = form.cleaned_data["policy"]
    return preview_context(
        form,
        lambda: policy_services.policy_change_preview(actor=request.user, item=item, policy=policy),
    )


@require_POST
def item_policy_preview(request: HtmxHttpRequest, name: str, pk: int) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    item = _item(vault, pk)
    form = ChangePolicyForm(request.POST, item=item)
    extra = _change_preview(request, item, form)
    return _item_page(request, vault, item, partial="change-preview", change_form=form, **extra)


@require_POST
def item_stop(request: HtmxHttpRequest, name: str, pk: int) -> HttpResponse:
    """Stop protection; deleting the data also needs the item's name typed."""
    vault = get_vault_for_user(request.user, name)
    item = _item(vault, pk)
    form = StopProtectionForm(request.POST)
    form.is_valid()
    delete_data = bool(form.cleaned_data.get("delete_data"))
    if delete_data and form.cleaned_data.get("confirmation") != item.name:
        form.add_error("confirmation", f"Type the item's exact name ({item.name}) to confirm.")
        return _item_page(request, vault, item, stop_form=form, status=400)
    try:
        item = services.protection_stop(actor=request.user, item=item, delete_data=delete_data)
    except DomainError as error:
        return _item_page(
            request, vault, item, stop_form=form, protection_refusal=error, status=error.http_status
        )
    messages.success(request, f"Protection of {item.name} stopped: {_stopped(item)}.")
    if item.pk is None:
        return redirect("vaults:blade", name=vault.name, blade="items")
    return redirect("vaults:item", name=vault.name, pk=item.pk)


def _stopped(item: ProtectedItem) -> str:
    if item.pk is None:
        return "its data is deleted"
    if item.protection_state == ProtectedItem.State.SOFT_DELETED:
        return f"its data is soft-deleted until {item.purge_at:%Y-%m-%d %H:%M} UTC"
    return "its data is retained"


@require_POST
def item_resume(request: HtmxHttpRequest, name: str, pk: int) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    item = _item(vault, pk)
    try:
        services.protection_resume(actor=request.user, item=item)
    except DomainError as error:
        return _item_page(request, vault, item, protection_refusal=error, status=error.http_status)
    messages.success(request, f"Protection of {item.name} resumed.")
    return redirect("vaults:item", name=vault.name, pk=item.pk)


def _point_result(
    request: HtmxHttpRequest,
    vault: Vault,
    item: ProtectedItem,
    point_pk: int,
    *,
    error: DomainError | None = None,
    notice: str = "",
) -> HttpResponse:
    """The points table again, with the refusal in the row of the point acted on."""
    if error is not None:
        return _item_page(
            request, vault, item, partial="points", status=error.http_status,
            point_refusal=error, refused_point=point_pk,
        )  # fmt: skip
    if request.htmx:
        return _item_page(request, vault, item, partial="points", notice=notice)
    messages.success(request, notice)
    return redirect("vaults:item", name=vault.name, pk=item.pk)


@require_POST
def point_delete(request: HtmxHttpRequest, name: str, pk: int, point_pk: int) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    item = _item(vault, pk)
    point = _point(item, point_pk)
    try:
        kept = services.point_delete(actor=request.user, point=point)
    except DomainError as error:
        return _point_result(request, vault, item, point_pk, error=error)
    notice = f"Point {point_pk} deleted."
    if kept is not None and kept.soft_deleted_until is not None:
        notice = (
            f"Point {point_pk} soft-deleted: restorable until "
            f"{kept.soft_deleted_until:%Y-%m-%d %H:%M} UTC, then purged. Retain it again to "
            "keep it."
        )
    return _point_result(request, vault, item, point_pk, notice=notice)


@require_POST
def point_retain(request: HtmxHttpRequest, name: str, pk: int, point_pk: int) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    item = _item(vault, pk)
    point = _point(item, point_pk)
    form = RetainUntilForm(request.POST)
    try:
        if not form.is_valid():
            raise DomainError("validation_error", "Give a date and time (UTC).")
        point = services.point_retain_until(
            actor=request.user, point=point, retain_until=form.cleaned_data["retain_until"]
        )
    except DomainError as error:
        return _point_result(request, vault, item, point_pk, error=error)
    notice = f"Point {point_pk} is now kept until {point.expires_at:%Y-%m-%d %H:%M} UTC."
    return _point_result(request, vault, item, point_pk, notice=notice)


@require_POST
def point_drill(request: HtmxHttpRequest, name: str, pk: int, point_pk: int) -> HttpResponse:
    """Run a restore drill of a point now; its job's page follows, a refusal shows in the
    point's row."""
    vault = get_vault_for_user(request.user, name)
    item = _item(vault, pk)
    point = _point(item, point_pk)
    try:
        job = job_requests.drill_request(actor=request.user, point=point)
    except DomainError as error:
        return _point_result(request, vault, item, point_pk, error=error)
    if job_requests.job_waiting_for_queue(job):
        messages.warning(request, f"Job #{job.pk}: {job.error}")
    if request.htmx:  # the whole page moves on to the job, as after a plain form post
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("jobs:detail", kwargs={"pk": job.pk})
        return response
    return redirect("jobs:detail", pk=job.pk)
