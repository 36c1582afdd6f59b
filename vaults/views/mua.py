"""The Multi-user authorization blade (SPEC 3.4): protect the vault with a Resource Guard, or
remove it."""

from __future__ import annotations

from django.http import HttpResponse
from django.views.decorators.http import require_POST

from portal.gate import DomainError
from portal.http import HtmxHttpRequest

from .. import services
from ..blades import blade_done, blade_refused
from ..forms import GuardChoiceForm, form_refusal
from ..selectors import get_vault_for_user


@require_POST
def guard_set(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    form = GuardChoiceForm(request.POST)
    if not form.is_valid():
        return blade_refused(request, vault, "mua", form_refusal(form), "guard")
    guard = form.cleaned_data["guard"]
    try:
        vault = services.vault_guard_set(actor=request.user, vault=vault, guard=guard)
    except DomainError as error:
        return blade_refused(request, vault, "mua", error, "guard")
    return blade_done(request, vault, "mua", f"Vault {vault.name} is protected by {guard.name}.")


@require_POST
def guard_remove(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    try:
        vault = services.vault_guard_remove(actor=request.user, vault=vault)
    except DomainError as error:
        return blade_refused(request, vault, "mua", error, "guard-remove")
    return blade_done(
        request, vault, "mua", "Resource Guard removed: multi-user authorization is off."
    )
