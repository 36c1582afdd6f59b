"""The Replication blade (SPEC 3.10): pair the vault with a replica vault in another region,
see the lag, the last copy and the copies in flight, and stop replicating (gated)."""

from __future__ import annotations

import re

from django.http import HttpResponse
from django.views.decorators.http import require_POST

from portal.gate import DomainError
from portal.http import HtmxHttpRequest

from .. import services
from ..blade_replication import ReplicaForm
from ..blades import blade_done, blade_refused
from ..forms import form_refusal
from ..models import Vault
from ..selectors import get_vault_for_user

NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,49}")


@require_POST
def replica_set(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    raw = request.POST.get("replica", "")
    if not NAME.fullmatch(raw):  # no lookup of a hostile value (a NUL is a database error)
        error = DomainError(
            "validation_error", "replica: choose one of the vaults offered.", field="replica"
        )
        return blade_refused(request, vault, "replication", error, "pair")
    form = ReplicaForm(request.POST, vault=vault)
    if not form.is_valid():
        # A name not offered still goes to the gate, which says why it cannot be paired.
        wanted = Vault.objects.filter(name=raw).first()
        if wanted is None:
            return blade_refused(request, vault, "replication", form_refusal(form), "pair")
    else:
        wanted = form.cleaned_data["replica"]
    try:
        vault = services.replica_set(actor=request.user, vault=vault, replica=wanted)
    except DomainError as error:
        return blade_refused(request, vault, "replication", error, "pair")
    return blade_done(
        request,
        vault,
        "replication",
        f"Vault {vault.name} now replicates to {wanted.name}: every recovery point is copied "
        "there, the existing ones newest first.",
    )


@require_POST
def replica_remove(request: HtmxHttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    if request.POST.get("confirmation", "") != vault.name:
        error = DomainError(
            "confirmation_mismatch",
            f"Type the vault's exact name, {vault.name}, to stop replication.",
            field="confirmation",
        )
        return blade_refused(request, vault, "replication", error, "unpair")
    try:
        vault = services.replica_remove(actor=request.user, vault=vault)
    except DomainError as error:
        return blade_refused(request, vault, "replication", error, "unpair")
    return blade_done(
        request,
        vault,
        "replication",
        "Replication stopped. The copies already made stay in the replica under its own rules.",
    )
