"""Vault pages: the list, creation, and the vault's blades."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from guards.models import ResourceGuard
from guards.services import elevation_remaining
from portal import clock
from portal.gate import DomainError
from portal.http import HtmxHttpRequest
from portal.models import Approval
from portal.roles import has_capability

from . import locations, selectors, services
from .filters import VaultFilter
from .forms import (
    ConfirmNameForm,
    GuardChoiceForm,
    ImmutabilityForm,
    SoftDeleteForm,
    VaultCreateForm,
)
from .jobs import requests as job_requests
from .models import ProtectedItem, Vault
from .selectors import get_vault_for_user, vaults_for_user
from .storage import StorageError

BLADES = [
    ("overview", "Overview"),
    ("properties", "Properties"),
    ("immutability", "Immutable vault"),
    ("security", "Security settings"),
    ("mua", "Multi-user authorization"),
    ("policies", "Backup policies"),
    ("items", "Backup items"),
    ("jobs", "Jobs"),
]
SORTS = {
    "name",
    "-name",
    "kind",
    "-kind",
    "region",
    "-region",
    "immutability",
    "-immutability",
    "created_at",
    "-created_at",
}


def vault_list(request: HtmxHttpRequest) -> HttpResponse:
    if not has_capability(request.user, "view"):
        raise PermissionDenied
    vault_filter = VaultFilter(request.GET, queryset=vaults_for_user(request.user))
    sort = request.GET.get("sort", "name")
    queryset = vault_filter.qs.order_by(sort if sort in SORTS else "name", "pk")
    page = Paginator(queryset, 25).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"filter": vault_filter, "page": page, "sort": sort, "query": query.urlencode()}
    template = "vaults/list.html#results" if request.htmx else "vaults/list.html"
    return render(request, template, context)


def vault_create(request: HtmxHttpRequest) -> HttpResponse:
    form = VaultCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            vault = services.vault_create(actor=request.user, **form.cleaned_data)
        except DomainError as error:
            if error.code == "permission_denied":
                raise PermissionDenied(error.detail) from error  # refused and audited
            form.add_error(error.field if error.field in form.fields else None, error.detail)
            return render(request, "vaults/create.html", {"form": form}, status=400)
        messages.success(request, f"Vault {vault.name} created.")
        return redirect("vaults:blade", name=vault.name, blade="properties")
    return render(request, "vaults/create.html", {"form": form})


def blade_context(request: HtmxHttpRequest, vault: Vault, blade: str) -> dict[str, object]:
    """What every blade of the vault page needs; the policies app's pages build on it."""
    now = clock.now()
    pending_lock = (
        Approval.objects.filter(
            vault=vault,
            kind=Approval.Kind.LOCK_IMMUTABILITY,
            status=Approval.Status.PENDING,
            expires_at__gt=now,
        )
        .select_related("requested_by")
        .first()
    )
    context = {
        "vault": vault,
        "blade": blade,
        "blades": BLADES,
        "pending_lock": pending_lock,
        "lock_form": ConfirmNameForm(),
        "delete_form": ConfirmNameForm(),
        "point_count": vault.unexpired_point_count(now),
        "item_count": vault.items.count(),
        "states": Vault.Immutability,
        "on_s3": locations.is_s3(vault.storage_location),
    }
    if context["on_s3"] and blade in {"overview", "properties"}:
        context["storage_lock"] = selectors.storage_lock_summary(vault, now)
    if blade == "security":
        context.update(_security_context(vault, now))
    elif blade == "mua":
        context.update(_mua_context(request, vault, now))
    elif blade == "jobs":
        context.update(_jobs_context(vault))
    return context


def _jobs_context(vault: Vault) -> dict[str, object]:
    """The vault's latest jobs (live progress) and its items' on-demand backup links."""
    jobs = vault.jobs.select_related("item", "requested_by").order_by("-created_at", "-id")
    return {
        "jobs": list(jobs[:25]),
        "job_count": jobs.count(),
        "backup_items": list(
            vault.items.filter(protection_state=ProtectedItem.State.PROTECTED).order_by("name")
        ),
    }


def _security_context(vault: Vault, now: datetime) -> dict[str, object]:
    """Soft delete (SPEC 3.3): a fixed number of queries, however many rows are listed."""
    items = list(
        vault.items.filter(protection_state=ProtectedItem.State.SOFT_DELETED).order_by(
            "purge_at", "name"
        )
    )
    points = list(
        vault.recovery_points.soft_deleted(now)
        .select_related("item")
        .order_by("soft_deleted_until", "pk")
    )
    pending_always_on = (
        Approval.objects.filter(
            vault=vault,
            kind=Approval.Kind.ALWAYS_ON_SOFT_DELETE,
            status=Approval.Status.PENDING,
            expires_at__gt=now,
        )
        .select_related("requested_by")
        .first()
    )
    return {
        "soft_deleted_items": items,
        "soft_deleted_points": points,
        "purge_count": len(items),
        "pending_always_on": pending_always_on,
        "always_on_form": ConfirmNameForm(),
    }


def _mua_context(request: HtmxHttpRequest, vault: Vault, now: datetime) -> dict[str, object]:
    """The vault's Resource Guard, what it protects, and the viewer's elevation on it."""
    guard = vault.resource_guard
    context: dict[str, object] = {
        "guard_form": GuardChoiceForm(current=guard),
        "guard_operations": [],
        "elevation": None,
    }
    if guard is None:
        return context
    context["guard_operations"] = [
        (label, guard.protects(value), value in guard.MANDATORY)
        for value, label in ResourceGuard.Operation.choices
    ]
    elevation = (
        Approval.objects.filter(
            kind=Approval.Kind.ELEVATION,
            status=Approval.Status.APPROVED,
            guard=guard,
            requested_by_id=request.user.pk,
            active_until__gt=now,
        )
        .order_by("-active_until")
        .first()
    )
    if elevation is not None:
        left = elevation_remaining(elevation, now)
        context["elevation"] = elevation
        context["elevation_minutes"] = math.ceil(left.total_seconds() / 60)
    return context


def vault_blade(request: HtmxHttpRequest, name: str, blade: str = "overview") -> HttpResponse:
    if blade not in dict(BLADES):
        raise Http404("No such blade.")
    vault = get_vault_for_user(request.user, name)
    return render(request, "vaults/detail.html", blade_context(request, vault, blade))


def _render_immutability(
    request: HtmxHttpRequest,
    vault: Vault,
    *,
    error: DomainError | None = None,
    lock_form: ConfirmNameForm | None = None,
    status: int = 200,
) -> HttpResponse:
    context = blade_context(request, vault, "immutability")
    context["error"] = error
    if lock_form is not None:
        context["lock_form"] = lock_form
    template = "vaults/detail.html#immutability" if request.htmx else "vaults/detail.html"
    return render(request, template, context, status=status)


@require_POST
def immutability_change(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    form = ImmutabilityForm(request.POST)
    if not form.is_valid():
        error = DomainError("validation_error", "Choose Enabled or Disabled.", field="state")
        return _render_immutability(request, vault, error=error, status=400)
    try:
        vault = services.immutability_set(
            actor=request.user, vault=vault, state=form.cleaned_data["state"]
        )
    except DomainError as error:
        return _render_immutability(request, vault, error=error, status=error.http_status)
    messages.success(request, f"Immutability is now {vault.get_immutability_display()}.")
    if request.htmx:
        return _render_immutability(request, vault)
    return redirect("vaults:blade", name=vault.name, blade="immutability")


@require_POST
def immutability_lock(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    form = ConfirmNameForm(request.POST)
    confirmation = form.data.get("confirmation", "")
    try:
        services.immutability_lock_request(
            actor=request.user,
            vault=vault,
            confirmation=confirmation,
            otp=request.POST.get("otp", "")[:16],
        )
    except DomainError as error:
        if error.field == "confirmation":
            form.is_valid()
            form.add_error("confirmation", error.detail)
        return _render_immutability(
            request, vault, error=error, lock_form=form, status=error.http_status
        )
    messages.info(request, "Lock requested: a security admin must approve it within 24 hours.")
    if request.htmx:
        return _render_immutability(request, vault)
    return redirect("vaults:blade", name=vault.name, blade="immutability")


@require_POST
def job_alerts_mute(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    muted = request.POST.get("muted") == "1"
    try:
        services.job_alerts_mute(actor=request.user, vault=vault, muted=muted)
    except DomainError as error:
        if error.code == "permission_denied":
            raise PermissionDenied(error.detail) from error
        messages.error(request, error.detail)
    else:
        messages.success(request, f"Job alerts {'muted' if muted else 'delivered again'}.")
    return redirect("vaults:blade", name=vault.name, blade="properties")


@require_POST
def lock_verify(request: HtmxHttpRequest, name: str) -> HttpResponse:
    """Read every storage lock of the vault's points back from S3 (a job)."""
    vault = get_vault_for_user(request.user, name)
    try:
        job = job_requests.lock_verify_request(actor=request.user, vault=vault)
    except DomainError as error:
        if error.code == "permission_denied":
            raise PermissionDenied(error.detail) from error
        messages.error(request, error.detail)
    except StorageError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Storage lock verification queued (job #{job.pk}).")
    return redirect("vaults:blade", name=vault.name, blade="properties")


@require_POST
def vault_delete(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    form = ConfirmNameForm(request.POST)
    confirmed = form.is_valid() and form.cleaned_data["confirmation"] == vault.name
    # The typed name guards an admin's slip; anyone else goes to the gate to be refused.
    if not confirmed and has_capability(request.user, "manage"):
        messages.error(request, f"Type the vault's exact name ({vault.name}) to delete it.")
        return redirect("vaults:blade", name=vault.name, blade="properties")
    try:
        services.vault_delete(actor=request.user, vault=vault)
    except DomainError as error:
        if error.code == "permission_denied":
            raise PermissionDenied(error.detail) from error  # refused and audited
        messages.error(request, error.detail)
        return redirect("vaults:blade", name=vault.name, blade="properties")
    messages.success(request, f"Vault {name} deleted.")
    return redirect("vaults:list")


# --- Security settings and Multi-user authorization blades (SPEC 3.3, 3.4) ----------------------


def _render_blade(
    request: HtmxHttpRequest,
    vault: Vault,
    blade: str,
    *,
    error: DomainError | None = None,
    error_at: str = "",
    notice: str = "",
    status: int = 200,
    **extra: object,
) -> HttpResponse:
    """The blade as a partial for htmx, or the whole page; a refusal is shown at ``error_at``,
    next to the control the person used."""
    context = blade_context(request, vault, blade)
    context.update(error=error, error_at=error_at, notice=notice, **extra)
    template = f"vaults/detail.html#{blade}" if request.htmx else "vaults/detail.html"
    return render(request, template, context, status=status)


def _refused(
    request: HtmxHttpRequest, vault: Vault, blade: str, error: DomainError, at: str, **extra: Any
) -> HttpResponse:
    # A role refusal concerns the whole blade (a reader sees none of its controls).
    at = "page" if error.code == "permission_denied" else at
    return _render_blade(
        request, vault, blade, error=error, error_at=at, status=error.http_status, **extra
    )


def _done(request: HtmxHttpRequest, vault: Vault, blade: str, notice: str) -> HttpResponse:
    if request.htmx:
        return _render_blade(request, vault, blade, notice=notice)
    messages.success(request, notice)
    return redirect("vaults:blade", name=vault.name, blade=blade)


def _form_error(form: SoftDeleteForm | GuardChoiceForm) -> DomainError:
    field, errors = next(iter(form.errors.items()))
    return DomainError("validation_error", str(errors[0]), field=field)


@require_POST
def soft_delete_change(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    form = SoftDeleteForm(request.POST)
    at = "disable" if request.POST.get("state") == Vault.SoftDelete.DISABLED else "soft-delete"
    if not form.is_valid():
        return _refused(request, vault, "security", _form_error(form), at)
    try:
        vault = services.soft_delete_set(actor=request.user, vault=vault, **form.cleaned_data)
    except DomainError as error:
        return _refused(request, vault, "security", error, at)
    state = "on" if vault.soft_delete_on else "off"
    notice = f"Soft delete is {state}; retention {vault.soft_delete_retention_days} days."
    return _done(request, vault, "security", notice)


@require_POST
def soft_delete_always_on(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    form = ConfirmNameForm(request.POST)
    confirmation = form.data.get("confirmation", "")
    try:
        services.soft_delete_always_on_request(
            actor=request.user,
            vault=vault,
            confirmation=confirmation,
            otp=request.POST.get("otp", "")[:16],
        )
    except DomainError as error:
        return _refused(request, vault, "security", error, "always-on", always_on_form=form)
    notice = "Always-on requested: a security admin must approve it within 24 hours."
    return _done(request, vault, "security", notice)


@require_POST
def item_undelete(request: HtmxHttpRequest, name: str, pk: int) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    item = get_object_or_404(vault.items.all(), pk=pk)
    item.vault = vault
    try:
        item = services.item_undelete(actor=request.user, item=item)
    except DomainError as error:
        return _refused(request, vault, "security", error, "undelete")
    notice = f"Item {item.name} undeleted: protection is stopped and its data retained."
    return _done(request, vault, "security", notice)


@require_POST
def guard_set(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    form = GuardChoiceForm(request.POST)
    if not form.is_valid():
        return _refused(request, vault, "mua", _form_error(form), "guard")
    guard = form.cleaned_data["guard"]
    try:
        vault = services.vault_guard_set(actor=request.user, vault=vault, guard=guard)
    except DomainError as error:
        return _refused(request, vault, "mua", error, "guard")
    return _done(request, vault, "mua", f"Vault {vault.name} is protected by {guard.name}.")


@require_POST
def guard_remove(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    try:
        vault = services.vault_guard_remove(actor=request.user, vault=vault)
    except DomainError as error:
        return _refused(request, vault, "mua", error, "guard-remove")
    return _done(request, vault, "mua", "Resource Guard removed: multi-user authorization is off.")
