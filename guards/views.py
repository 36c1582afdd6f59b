"""Resource Guard pages: security admins manage guards; backup admins see them and ask for
time-bound access."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from portal import clock
from portal.approval_facts import RETRY_SESSION_KEY
from portal.forms import add_domain_error
from portal.gate import DomainError
from portal.http import require_capability
from portal.labels import GUARD_OPERATION_LABELS
from portal.models import Approval
from portal.roles import has_capability

from . import services
from .forms import AccessRequestForm, GuardForm
from .models import ResourceGuard


def guard_list(request: HttpRequest) -> HttpResponse:
    require_capability(request, "view")
    form = GuardForm(
        request.POST or None, initial={"protected_operations": ResourceGuard.Operation.values}
    )
    if request.method == "POST" and form.is_valid():
        try:
            guard = services.guard_create(actor=request.user, **form.cleaned_data)
        except DomainError as error:
            add_domain_error(form, error, keep_field_name=True)
        else:
            messages.success(request, f"Resource Guard {guard.name} created.")
            return redirect("guard-detail", name=guard.name)
    guards = ResourceGuard.objects.select_related("owner").prefetch_related("vaults")
    return render(request, "guards/list.html", {"guards": guards, "form": form})


# Where each of the person's access requests came from (a mua_required refusal's "Request
# access" link carries the page as ``next``): once approved, "Retry" takes them back there.
RETRY_KEY = RETRY_SESSION_KEY


def _local_path(request: HttpRequest, target: str) -> str:
    """``target`` if it is a path on this site, else ""."""
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return ""


def retry_url(request: HttpRequest, approval: Approval) -> str:
    """The page to go back to once ``approval`` (an elevation the person asked for) is on."""
    return str(request.session.get(RETRY_KEY, {}).get(str(approval.pk), ""))


def guard_detail(request: HttpRequest, name: str) -> HttpResponse:
    require_capability(request, "view")
    guard = get_object_or_404(ResourceGuard.objects.prefetch_related("vaults"), name=name)
    now = clock.now()
    elevations = Approval.objects.filter(guard=guard, kind=Approval.Kind.ELEVATION)
    mine = [a for a in elevations.filter(requested_by_id=request.user.pk)[:10]]
    active = list(elevations.active_elevations(now).select_related("requested_by"))
    operation = request.GET.get("operation", "")
    operation_label = GUARD_OPERATION_LABELS.get(operation, "") if guard.protects(operation) else ""
    initial = {"justification": f"To {operation_label[:1].lower()}{operation_label[1:]}."}
    context = {
        "guard": guard,
        "now": now,
        "mine": [
            (
                a,
                a.effective_status(now),
                services.elevation_remaining(a, now),
                retry_url(request, a),
            )
            for a in mine
        ],
        "operation_label": operation_label,
        "next": _local_path(request, request.GET.get("next", "")),
        "active": [(a, services.elevation_remaining(a, now)) for a in active],
        "operations": [
            (value, label, guard.protects(value), value in guard.MANDATORY)
            for value, label in ResourceGuard.Operation.choices
        ],
        "request_form": AccessRequestForm(initial=initial if operation_label else None),
        "pending_weakenings": Approval.objects.pending(now)
        .filter(guard=guard, kind=Approval.Kind.GUARD_WEAKEN)
        .select_related("requested_by"),
        "can_manage_guards": has_capability(request.user, "manage_guards"),
    }
    return render(request, "guards/detail.html", context)


@require_POST
def guard_update(request: HttpRequest, name: str) -> HttpResponse:
    guard = get_object_or_404(ResourceGuard, name=name)
    try:
        result = services.guard_update(
            actor=request.user,
            guard=guard,
            protected_operations=request.POST.getlist("protected_operations"),
            otp=request.POST.get("otp", "")[:16],
        )
    except DomainError as error:
        messages.error(request, error.detail)
    else:
        messages.success(request, _saved(result))
    return redirect("guard-detail", name=guard.name)


def _saved(result: ResourceGuard | Approval) -> str:
    if isinstance(result, Approval):
        return (
            f"Removing protection weakens the guard: request #{result.pk} waits for another "
            "security admin to approve it. Nothing changes until then."
        )
    return "Protected operations saved."


@require_POST
def guard_delete(request: HttpRequest, name: str) -> HttpResponse:
    guard = get_object_or_404(ResourceGuard, name=name)
    try:
        approval = services.guard_delete(
            actor=request.user, guard=guard, otp=request.POST.get("otp", "")[:16]
        )
    except DomainError as error:
        messages.error(request, error.detail)
        return redirect("guard-detail", name=guard.name)
    messages.success(
        request,
        f"Deleting {guard.name} waits for another security admin to approve request "
        f"#{approval.pk}.",
    )
    return redirect("guard-detail", name=guard.name)


@require_http_methods(["GET", "POST"])
def access_request(request: HttpRequest, name: str) -> HttpResponse:
    """POST: ask for an elevation. GET (the "Request access" link of a ``mua_required``
    refusal, ``?operation=...&next=...``): the guard's page with the form prefilled."""
    if request.method == "GET":
        return guard_detail(request, name)
    guard = get_object_or_404(ResourceGuard, name=name)
    form = AccessRequestForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a justification and a duration (15 minutes to 8 hours).")
        return redirect("guard-detail", name=guard.name)
    back = _local_path(request, request.POST.get("next", ""))
    try:
        approval = services.elevation_request(
            actor=request.user,
            guard=guard,
            otp=request.POST.get("otp", "")[:16],
            **form.cleaned_data,
        )
    except DomainError as error:
        messages.error(request, error.detail)
    else:
        if back:
            kept = list(request.session.get(RETRY_KEY, {}).items())[-19:]
            request.session[RETRY_KEY] = {**dict(kept), str(approval.pk): back}
        messages.success(
            request,
            f"Access requested (request #{approval.pk}): a security admin other than you "
            "decides. Once it is approved, Retry below takes you back to where you were.",
        )
    return redirect(reverse("guard-detail", args=[guard.name]) + "#my-elevations")


@require_POST
def elevation_release(request: HttpRequest, pk: int) -> HttpResponse:
    approval = get_object_or_404(Approval, pk=pk, kind=Approval.Kind.ELEVATION)
    try:
        services.elevation_release(actor=request.user, approval=approval)
    except DomainError as error:
        messages.error(request, error.detail)
    else:
        messages.success(request, "Elevation given up.")
    return redirect("guard-detail", name=approval.guard.name if approval.guard else "")
