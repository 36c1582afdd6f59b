"""The Immutable vault blade (SPEC 3.2, 3.5): enable or disable immutability, ask to lock it."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from portal.gate import DomainError
from portal.http import HtmxHttpRequest

from .. import services
from ..blades import refusal_redirect, render_blade
from ..forms import ConfirmNameForm, ImmutabilityForm
from ..models import Vault
from ..selectors import get_vault_for_user


def _render(
    request: HtmxHttpRequest,
    vault: Vault,
    *,
    error: DomainError | None = None,
    lock_form: ConfirmNameForm | None = None,
    status: int = 200,
) -> HttpResponse:
    if error is not None and not request.htmx and error.code != "permission_denied":
        return refusal_redirect(request, vault, "immutability", error, "immutability")
    extra: dict[str, Any] = {"error": error}
    if lock_form is not None:
        extra["lock_form"] = lock_form
    return render_blade(
        request, vault, "immutability", partial="immutability", status=status, **extra
    )


@require_POST
def immutability_change(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    form = ImmutabilityForm(request.POST)
    if not form.is_valid():
        error = DomainError("validation_error", "Choose Enabled or Disabled.", field="state")
        return _render(request, vault, error=error, status=400)
    try:
        vault = services.immutability_set(
            actor=request.user, vault=vault, state=form.cleaned_data["state"]
        )
    except DomainError as error:
        return _render(request, vault, error=error, status=error.http_status)
    messages.success(request, f"Immutability is now {vault.get_immutability_display()}.")
    if request.htmx:
        return _render(request, vault)
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
        return _render(request, vault, error=error, lock_form=form, status=error.http_status)
    messages.info(request, "Lock requested: a security admin must approve it within 24 hours.")
    if request.htmx:
        return _render(request, vault)
    return redirect("vaults:blade", name=vault.name, blade="immutability")
