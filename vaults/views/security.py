"""The Security settings blade (SPEC 3.3): soft delete, always-on soft delete, undelete."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_POST

from portal.gate import DomainError
from portal.http import HtmxHttpRequest

from .. import services
from ..blades import blade_done, blade_refused
from ..forms import ConfirmNameForm, SoftDeleteForm, form_refusal
from ..models import Vault
from ..selectors import get_vault_for_user


@require_POST
def soft_delete_change(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    form = SoftDeleteForm(request.POST)
    at = "disable" if request.POST.get("state") == Vault.SoftDelete.DISABLED else "soft-delete"
    if not form.is_valid():
        return blade_refused(request, vault, "security", form_refusal(form), at)
    try:
        vault = services.soft_delete_set(actor=request.user, vault=vault, **form.cleaned_data)
    except DomainError as error:
        return blade_refused(request, vault, "security", error, at)
    state = "on" if vault.soft_delete_on else "off"
    notice = f"Soft delete is {state}; retention {vault.soft_delete_retention_days} days."
    return blade_done(request, vault, "security", notice)


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
        return blade_refused(request, vault, "security", error, "always-on", always_on_form=form)
    notice = "Always-on requested: a security admin must approve it within 24 hours."
    return blade_done(request, vault, "security", notice)


@require_POST
def item_undelete(request: HtmxHttpRequest, name: str, pk: int) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    item = get_object_or_404(vault.items.all(), pk=pk)
    item.vault = vault
    try:
        item = services.item_undelete(actor=request.user, item=item)
    except DomainError as error:
        return blade_refused(request, vault, "security", error, "undelete")
    notice = f"Item {item.name} undeleted: protection is stopped and its data retained."
    return blade_done(request, vault, "security", notice)
