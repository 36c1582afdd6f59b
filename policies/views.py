"""The vault page's Backup policies blade (SPEC 3.6, 7): list, create, edit with a preview,
delete. It renders through ``vaults.blades.render_blade`` like every blade of the vault page.

Every write calls one service; a ``validation_error`` lands on the form field it names and
any other refusal (immutability, MUA, a policy in use) is shown where the person acted, with
the refusal's HTTP status. Previews are dry runs through the same gate checks.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import Count
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from portal.forms import refusal_context
from portal.gate import DomainError
from portal.http import HtmxHttpRequest
from vaults.blades import render_blade
from vaults.models import Vault
from vaults.selectors import get_vault_for_user

from . import services
from .forms import MONTH_CHOICES, PolicyForm
from .models import Policy
from .previews import preview_context


def _page(
    request: HtmxHttpRequest,
    vault: Vault,
    *,
    partial: str | None = None,
    status: int = 200,
    **extra: Any,
) -> HttpResponse:
    """The vault page on the Backup policies blade (its ``partial`` region for htmx)."""
    return render_blade(
        request,
        vault,
        "policies",
        partial=partial,
        status=status,
        month_choices=MONTH_CHOICES,
        **extra,
    )


# --- Backup policies ------------------------------------------------------------------------


def _policy_list(vault: Vault) -> dict[str, Any]:
    policies = vault.policies.annotate(item_count=Count("items")).order_by("name")
    return {"policies": policies}


def policy_list(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    return _page(request, vault, partial="policy-list", **_policy_list(vault))


def policy_create(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    form = PolicyForm.for_policy(Policy(vault=vault), request.POST or None)
    extra: dict[str, Any] = {"form": form}
    if request.method == "POST" and form.is_valid():
        try:
            policy = services.policy_create(actor=request.user, vault=vault, **form.cleaned_data)
        except DomainError as error:
            extra.update(refusal_context(form, error, "refusal"), status=error.http_status)
        else:
            messages.success(request, f"Policy {policy.name} created.")
            return redirect("vaults:blade", name=vault.name, blade="policies")
    return _page(request, vault, **extra)


def _policy_preview(request: HtmxHttpRequest, policy: Policy, form: PolicyForm) -> dict[str, Any]:
    if not form.is_valid():
        return {}
    changes = form.cleaned_data
    return preview_context(
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
            extra.update(refusal_context(form, error, "refusal"), status=error.http_status)
        else:
            messages.success(request, f"Policy {form.cleaned_data['name']} saved.")
            return redirect("vaults:blade", name=vault.name, blade="policies")
    if request.method == "POST":
        extra.update(_policy_preview(request, policy, form))
    return _page(request, vault, **extra)


@require_POST
def policy_preview(request: HtmxHttpRequest, name: str, pk: int) -> HttpResponse:
    """The preview region alone, for htmx as the edit form changes."""
    vault = get_vault_for_user(request.user, name)
    policy = get_object_or_404(vault.policies, pk=pk)
    form = PolicyForm.for_policy(policy, request.POST)
    extra = _policy_preview(request, policy, form)
    return _page(request, vault, partial="preview", policy=policy, form=form, **extra)


@require_POST
def policy_delete(request: HtmxHttpRequest, name: str, pk: int) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    policy = get_object_or_404(vault.policies, pk=pk)
    try:
        services.policy_delete(actor=request.user, policy=policy)
    except DomainError as error:
        return _page(
            request, vault, partial="policy-list", status=error.http_status,
            refusal=error, refused=policy, **_policy_list(vault),
        )  # fmt: skip
    notice = f"Policy {policy.name} deleted."
    if request.htmx:
        return _page(request, vault, partial="policy-list", notice=notice, **_policy_list(vault))
    messages.success(request, notice)
    return redirect("vaults:blade", name=vault.name, blade="policies")
