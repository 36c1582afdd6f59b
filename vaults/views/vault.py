"""The vault list, creating a vault, the vault page, and the Properties blade's actions."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from portal.forms import add_domain_error
from portal.gate import DomainError
from portal.http import HtmxHttpRequest
from portal.roles import has_capability

from .. import services
from ..blades import BLADES_BY_KEY, render_blade
from ..filters import VaultFilter
from ..forms import ConfirmNameForm, VaultCreateForm
from ..jobs import requests as job_requests
from ..selectors import get_vault_for_user, vaults_for_user
from ..storage import StorageError

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
            add_domain_error(form, error, keep_field_name=True)
            return render(request, "vaults/create.html", {"form": form}, status=400)
        messages.success(request, f"Vault {vault.name} created.")
        return redirect("vaults:blade", name=vault.name, blade="properties")
    return render(request, "vaults/create.html", {"form": form})


def vault_blade(request: HtmxHttpRequest, name: str, blade: str = "overview") -> HttpResponse:
    if blade not in BLADES_BY_KEY:
        raise Http404("No such blade.")
    vault = get_vault_for_user(request.user, name)
    return render_blade(request, vault, blade)


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
