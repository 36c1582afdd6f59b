"""The vault page's Backup policies and Backup items blades (SPEC 3.6, 3.7, 7).

Every write calls one service; a ``validation_error`` lands on the form field it names and
any other refusal (immutability, MUA, a policy in use) is shown where the person acted, with
the refusal's HTTP status. Previews are dry runs through the same gate checks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from portal import clock
from portal.gate import DomainError
from portal.http import HtmxHttpRequest
from vaults import selectors
from vaults import services as vault_services
from vaults.models import ProtectedItem, RecoveryPoint, Vault
from vaults.selectors import get_vault_for_user
from vaults.storage import StorageError
from vaults.views import blade_context

from . import services
from .forms import (
    MONTH_CHOICES,
    ChangePolicyForm,
    DomainErrorsMixin,
    PolicyForm,
    ProtectForm,
    RetainUntilForm,
    StopProtectionForm,
)
from .models import Policy
from .services import Preview

PREVIEW_ROWS = 100
ITEM_SORTS = {
    "name", "-name", "policy__name", "-policy__name", "protection_state", "-protection_state",
    "last_backup_at", "-last_backup_at", "point_count", "-point_count",
}  # fmt: skip


# --- helpers --------------------------------------------------------------------------------


def _page(
    request: HtmxHttpRequest,
    vault: Vault,
    blade: str,
    *,
    partial: str | None = None,
    status: int = 200,
    **extra: Any,
) -> HttpResponse:
    """The vault page on ``blade``; only the ``partial`` region when htmx asks for it."""
    context = {**blade_context(request, vault, blade), "month_choices": MONTH_CHOICES, **extra}
    template = f"policies/{blade}.html#{partial}" if partial and request.htmx else None
    return render(request, template or "vaults/detail.html", context, status=status)


def _refusal(error: DomainError, form: DomainErrorsMixin, key: str) -> dict[str, Any]:
    """A validation error goes on the form; any other refusal is shown in place under ``key``."""
    if error.code == "validation_error":
        form.add_domain_error(error)
        return {}
    return {key: error}


def describe_delta(delta: timedelta) -> str:
    """``30 days later``, ``2 days 1 hour earlier``: how far an expiry moves, in words."""
    hours = round(abs(delta).total_seconds() / 3600)
    days, hours = divmod(hours, 24)
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    if hours or not days:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    return " ".join(parts) + (" later" if delta >= timedelta(0) else " earlier")


def _preview(form: DomainErrorsMixin, dry_run: Callable[[], Preview]) -> dict[str, Any]:
    """Run a preview; a validation error goes on the form, which the preview then lists."""
    try:
        preview = dry_run()
    except DomainError as error:
        form.add_domain_error(error)
        return {}
    moves = [(move, describe_delta(move.delta)) for move in preview.moves]
    more = max(0, len(moves) - PREVIEW_ROWS)
    return {"preview": preview, "moves": moves[:PREVIEW_ROWS], "more_moves": more}


# --- Backup policies ------------------------------------------------------------------------


def _policy_list(vault: Vault) -> dict[str, Any]:
    policies = vault.policies.annotate(item_count=Count("items")).order_by("name")
    return {"policies": policies}


def policy_list(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    return _page(request, vault, "policies", partial="policy-list", **_policy_list(vault))


def policy_create(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    form = PolicyForm.for_policy(Policy(vault=vault), request.POST or None)
    extra: dict[str, Any] = {"form": form}
    if request.method == "POST" and form.is_valid():
        try:
            policy = services.policy_create(actor=request.user, vault=vault, **form.cleaned_data)
        except DomainError as error:
            extra.update(_refusal(error, form, "refusal"), status=error.http_status)
        else:
            messages.success(request, f"Policy {policy.name} created.")
            return redirect("vaults:blade", name=vault.name, blade="policies")
    return _page(request, vault, "policies", **extra)


def _policy_preview(request: HtmxHttpRequest, policy: Policy, form: PolicyForm) -> dict[str, Any]:
    if not form.is_valid():
        return {}
    changes = form.cleaned_data
    return _preview(
        form, lambda: services.policy_preview(actor=request.user, policy=policy, changes=changes)
    )


def policy_edit(request: HtmxHttpRequest, name: str, pk: int) -> HttpResponse:
    """Edit a policy; "Preview" (or htmx on change) shows the effect before "Save"."""
    vault = get_vault_for_user(request.user, name)
    policy = get_object_or_404(vault.policies, pk=pk)
    form = PolicyForm.for_policy(policy, request.POST or None)
    extra: dict[str, Any] = {"policy": policy, "form": form}
    if request.method == "POST" and form.is_valid() and request.POST.get("action") == "save":
        try:
            services.policy_update(actor=request.user, policy=policy, changes=form.cleaned_data)
        except DomainError as error:
            extra.update(_refusal(error, form, "refusal"), status=error.http_status)
        else:
            messages.success(request, f"Policy {form.cleaned_data['name']} saved.")
            return redirect("vaults:blade", name=vault.name, blade="policies")
    if request.method == "POST":
        extra.update(_policy_preview(request, policy, form))
    return _page(request, vault, "policies", **extra)


@require_POST
def policy_preview(request: HtmxHttpRequest, name: str, pk: int) -> HttpResponse:
    """The preview region alone, for htmx as the edit form changes."""
    vault = get_vault_for_user(request.user, name)
    policy = get_object_or_404(vault.policies, pk=pk)
    form = PolicyForm.for_policy(policy, request.POST)
    extra = _policy_preview(request, policy, form)
    return _page(request, vault, "policies", partial="preview", policy=policy, form=form, **extra)


@require_POST
def policy_delete(request: HtmxHttpRequest, name: str, pk: int) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    policy = get_object_or_404(vault.policies, pk=pk)
    try:
        services.policy_delete(actor=request.user, policy=policy)
    except DomainError as error:
        return _page(
            request, vault, "policies", partial="policy-list", status=error.http_status,
            refusal=error, refused=policy, **_policy_list(vault),
        )  # fmt: skip
    notice = f"Policy {policy.name} deleted."
    if request.htmx:
        return _page(
            request, vault, "policies", partial="policy-list", notice=notice, **_policy_list(vault)
        )
    messages.success(request, notice)
    return redirect("vaults:blade", name=vault.name, blade="policies")


# --- Backup items ---------------------------------------------------------------------------


def _item(vault: Vault, pk: int) -> ProtectedItem:
    return get_object_or_404(vault.items.select_related("policy", "vault"), pk=pk)


def _point(item: ProtectedItem, pk: int) -> RecoveryPoint:
    return get_object_or_404(item.recovery_points.select_related("vault", "item"), pk=pk)


def _item_page(
    request: HtmxHttpRequest, vault: Vault, item: ProtectedItem, **extra: Any
) -> HttpResponse:
    points = item.recovery_points.order_by("-created_at", "-pk")
    context = {
        "item": item,
        "points": Paginator(points, 25).get_page(request.GET.get("page")),
        "now": clock.now(),
        "change_form": ChangePolicyForm(item=item),
        "stop_form": StopProtectionForm(),
        **extra,
    }
    return _page(request, vault, "items", **context)


def item_list(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    sort = request.GET.get("sort", "name")
    items = (
        vault.items.select_related("policy")
        .annotate(point_count=Count("recovery_points"))
        .order_by(sort if sort in ITEM_SORTS else "name", "pk")
    )
    page = Paginator(items, 25).get_page(request.GET.get("page"))
    query = f"sort={sort}" if sort in ITEM_SORTS else ""
    return _page(request, vault, "items", page=page, sort=sort, query=query)


def item_protect(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    form = ProtectForm(request.POST or None, vault=vault)
    extra: dict[str, Any] = {"form": form}
    if request.method == "POST" and form.is_valid():
        try:
            item = vault_services.item_protect(actor=request.user, vault=vault, **form.cleaned_data)
        except DomainError as error:
            extra.update(_refusal(error, form, "refusal"), status=error.http_status)
        else:
            messages.success(request, f"{item.name} is now protected by policy {item.policy.name}.")
            return redirect("vaults:item", name=vault.name, pk=item.pk)
    return _page(request, vault, "items", **extra)


def item_detail(request: HtmxHttpRequest, name: str, pk: int) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    return _item_page(request, vault, _item(vault, pk))


def point_browse(request: HtmxHttpRequest, name: str, pk: int, point_pk: int) -> HttpResponse:
    """Browse a recovery point's files (read-only; restore starts from the jobs forms)."""
    vault = get_vault_for_user(request.user, name)
    item = _item(vault, pk)
    point = _point(item, point_pk)
    path = request.GET.get("path", "").strip("/")
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
    }
    return render(request, "policies/browse.html", context, status=404 if error else 200)


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
            services.item_change_policy(actor=request.user, item=item, policy=policy)
        except DomainError as error:
            extra.update(_refusal(error, form, "change_refusal"), status=error.http_status)
        else:
            messages.success(request, f"{item.name} now uses policy {policy.name}.")
            return redirect("vaults:item", name=vault.name, pk=item.pk)
    extra.update(_change_preview(request, item, form))
    return _item_page(request, vault, item, **extra)


def _change_preview(
    request: HtmxHttpRequest, item: ProtectedItem, form: ChangePolicyForm
) -> dict[str, Any]:
    if not form.is_valid():
        return {}
    policy = form.cleaned_data["policy"]
    return _preview(
        form,
        lambda: services.policy_change_preview(actor=request.user, item=item, policy=policy),
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
        item = vault_services.protection_stop(
            actor=request.user, item=item, delete_data=delete_data
        )
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
        vault_services.protection_resume(actor=request.user, item=item)
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
        kept = vault_services.point_delete(actor=request.user, point=point)
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
        point = vault_services.point_retain_until(
            actor=request.user, point=point, retain_until=form.cleaned_data["retain_until"]
        )
    except DomainError as error:
        return _point_result(request, vault, item, point_pk, error=error)
    notice = f"Point {point_pk} is now kept until {point.expires_at:%Y-%m-%d %H:%M} UTC."
    return _point_result(request, vault, item, point_pk, notice=notice)
