"""Vault pages: the list, creation, and the vault's blades."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from portal import clock
from portal.access import get_vault_for_user, vaults_for_user
from portal.gate import DomainError
from portal.models import Approval
from portal.roles import has_capability

from . import services
from .filters import VaultFilter
from .forms import ConfirmNameForm, ImmutabilityForm, VaultCreateForm
from .models import Vault

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


def vault_list(request: HttpRequest) -> HttpResponse:
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


def vault_create(request: HttpRequest) -> HttpResponse:
    form = VaultCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            vault = services.vault_create(actor=request.user, **form.cleaned_data)
        except DomainError as error:
            form.add_error(error.field if error.field in form.fields else None, error.detail)
        else:
            messages.success(request, f"Vault {vault.name} created.")
            return redirect("vaults:blade", name=vault.name, blade="properties")
    return render(request, "vaults/create.html", {"form": form})


def blade_context(request: HttpRequest, vault: Vault, blade: str) -> dict[str, object]:
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
    return {
        "vault": vault,
        "blade": blade,
        "blades": BLADES,
        "pending_lock": pending_lock,
        "lock_form": ConfirmNameForm(),
        "delete_form": ConfirmNameForm(),
        "point_count": vault.unexpired_point_count(now),
        "item_count": vault.items.count(),
        "states": Vault.Immutability,
    }


def vault_blade(request: HttpRequest, name: str, blade: str = "overview") -> HttpResponse:
    if blade not in dict(BLADES):
        raise Http404("No such blade.")
    vault = get_vault_for_user(request.user, name)
    return render(request, "vaults/detail.html", blade_context(request, vault, blade))


def _render_immutability(
    request: HttpRequest,
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
def immutability_change(request: HttpRequest, name: str) -> HttpResponse:
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
def immutability_lock(request: HttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    form = ConfirmNameForm(request.POST)
    confirmation = form.data.get("confirmation", "")
    try:
        services.immutability_lock_request(
            actor=request.user, vault=vault, confirmation=confirmation
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
def vault_delete(request: HttpRequest, name: str) -> HttpResponse:
    vault = get_vault_for_user(request.user, name)
    form = ConfirmNameForm(request.POST)
    if not form.is_valid() or form.cleaned_data["confirmation"] != vault.name:
        messages.error(request, f"Type the vault's exact name ({vault.name}) to delete it.")
        return redirect("vaults:blade", name=vault.name, blade="properties")
    try:
        services.vault_delete(actor=request.user, vault=vault)
    except DomainError as error:
        messages.error(request, error.detail)
        return redirect("vaults:blade", name=vault.name, blade="properties")
    messages.success(request, f"Vault {name} deleted.")
    return redirect("vaults:list")
