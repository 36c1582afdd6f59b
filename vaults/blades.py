"""The vault page's blades: which there are, what each one shows, and rendering one.

A blade is a tab of the vault page (``/vaults/<name>/<key>/``): a key, a label, a template
``templates/vaults/blades/<key>.html`` and, if it needs more than every blade gets, a
function adding its context. The views of a blade (``vaults/views/<blade>.py``, the policies
app's ``policies/views.py``) render through :func:`render_blade`, which is all another app
needs: no app imports another's views.

A new blade: a ``Blade`` line in ``BLADES``, its template, its services module
(``vaults/services/<blade>.py``) and its views module (``vaults/views/<blade>.py``) with its
URLs in ``vaults/urls.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from guards.models import ResourceGuard
from guards.services import elevation_remaining
from portal import clock
from portal.gate import DomainError
from portal.http import HtmxHttpRequest
from portal.models import Approval

from . import locations, selectors
from .blade_replication import replication_context
from .forms import ConfirmNameForm, GuardChoiceForm
from .models import ProtectedItem, Vault

BladeContext = Callable[[HtmxHttpRequest, Vault, datetime], dict[str, Any]]


@dataclass(frozen=True)
class Blade:
    key: str
    label: str
    # What this blade shows beyond what every blade gets (blade_context).
    context: BladeContext | None = None

    @property
    def template(self) -> str:
        return f"vaults/blades/{self.key}.html"


def _storage_lock(request: HtmxHttpRequest, vault: Vault, now: datetime) -> dict[str, Any]:
    """What S3 confirmed about the vault's locks (Overview and Properties)."""
    if not locations.is_s3(vault.storage_location):
        return {}
    return {"storage_lock": selectors.storage_lock_summary(vault, now)}


def _security(request: HtmxHttpRequest, vault: Vault, now: datetime) -> dict[str, Any]:
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
        Approval.objects.pending(now)
        .filter(vault=vault, kind=Approval.Kind.ALWAYS_ON_SOFT_DELETE)
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


def _mua(request: HtmxHttpRequest, vault: Vault, now: datetime) -> dict[str, Any]:
    """The vault's Resource Guard, what it protects, and the viewer's elevation on it."""
    guard = vault.resource_guard
    context: dict[str, Any] = {
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
        Approval.objects.active_elevations(now)
        .filter(guard=guard, requested_by_id=request.user.pk)
        .order_by("-active_until")
        .first()
    )
    if elevation is not None:
        left = elevation_remaining(elevation, now)
        context["elevation"] = elevation
        context["elevation_minutes"] = math.ceil(left.total_seconds() / 60)
    return context


def _jobs(request: HtmxHttpRequest, vault: Vault, now: datetime) -> dict[str, Any]:
    """The vault's latest jobs (live progress) and its items' on-demand backup links."""
    jobs = vault.jobs.select_related("item", "requested_by").order_by("-created_at", "-id")
    return {
        "jobs": list(jobs[:25]),
        "job_count": jobs.count(),
        "backup_items": list(
            vault.items.filter(protection_state=ProtectedItem.State.PROTECTED).order_by("name")
        ),
    }


BLADES = [
    Blade("overview", "Overview", _storage_lock),
    Blade("properties", "Properties", _storage_lock),
    Blade("immutability", "Immutable vault"),
    Blade("security", "Security settings", _security),
    Blade("mua", "Multi-user authorization", _mua),
    Blade("replication", "Replication", replication_context),
    Blade("policies", "Backup policies"),
    Blade("items", "Backup items"),
    Blade("jobs", "Jobs", _jobs),
]
BLADES_BY_KEY = {blade.key: blade for blade in BLADES}


def blade_context(request: HtmxHttpRequest, vault: Vault, blade: str) -> dict[str, Any]:
    """What the vault page on ``blade`` needs: what every blade gets, then the blade's own."""
    now = clock.now()
    pending_lock = (
        Approval.objects.pending(now)
        .filter(vault=vault, kind=Approval.Kind.LOCK_IMMUTABILITY)
        .select_related("requested_by")
        .first()
    )
    context: dict[str, Any] = {
        "vault": vault,
        "blade": blade,
        "blades": BLADES,
        "blade_template": BLADES_BY_KEY[blade].template,
        "pending_lock": pending_lock,
        "lock_form": ConfirmNameForm(),
        "delete_form": ConfirmNameForm(),
        "point_count": vault.unexpired_point_count(now),
        "item_count": vault.items.count(),
        "states": Vault.Immutability,
        "on_s3": locations.is_s3(vault.storage_location),
    }
    extra = BLADES_BY_KEY[blade].context
    if extra is not None:
        context.update(extra(request, vault, now))
    return context


def render_blade(
    request: HtmxHttpRequest,
    vault: Vault,
    blade: str,
    *,
    partial: str | None = None,
    status: int = 200,
    **extra: Any,
) -> HttpResponse:
    """The vault page on ``blade``, or only the blade's ``partial`` region (a
    django-template-partials ``partialdef`` of its template) when htmx asks for it."""
    context = {**blade_context(request, vault, blade), **extra}
    if "error" not in extra and REFUSAL_KEY in request.session:
        # A refusal of a plain (non-htmx) form, kept over its redirect: shown at its control.
        kept = request.session.pop(REFUSAL_KEY)
        if kept.get("vault") == vault.name and kept.get("blade") == blade:
            context["error"] = DomainError(kept["code"], kept["detail"])
            context["error_at"] = kept["at"]
    template = "vaults/detail.html"
    if partial and request.htmx:
        template = f"{BLADES_BY_KEY[blade].template}#{partial}"
    return render(request, template, context, status=status)


def blade_refused(
    request: HtmxHttpRequest, vault: Vault, blade: str, error: DomainError, at: str, **extra: Any
) -> HttpResponse:
    """The blade again (its region, for htmx) with the refusal shown at ``at``, next to the
    control the person used; a role refusal concerns the whole blade (a reader sees none of
    its controls)."""
    at = "page" if error.code == "permission_denied" else at
    if not request.htmx and error.code != "permission_denied":
        return refusal_redirect(request, vault, blade, error, at)
    response = render_blade(
        request,
        vault,
        blade,
        partial=blade,
        error=error,
        error_at=at,
        status=error.http_status,
        **extra,
    )
    # The address bar keeps the blade's address, never the POST's.
    response["HX-Replace-Url"] = reverse("vaults:blade", args=[vault.name, blade])
    return response


REFUSAL_KEY = "holdfast_refusal"


def refusal_redirect(
    request: HtmxHttpRequest, vault: Vault, blade: str, error: DomainError, at: str
) -> HttpResponse:
    """A plain form's refusal: redirect after the POST (so reloading repeats nothing and the
    address bar shows the blade), the refusal kept in the session and shown at ``at`` again.
    (A role's refusal is answered 403 in place: the person has no control there to retry.)"""
    request.session[REFUSAL_KEY] = {
        "vault": vault.name,
        "blade": blade,
        "code": error.code,
        "detail": error.detail,
        "at": at,
    }
    return redirect("vaults:blade", name=vault.name, blade=blade)


def blade_done(request: HtmxHttpRequest, vault: Vault, blade: str, notice: str) -> HttpResponse:
    """The blade with ``notice`` for htmx; otherwise a message and a redirect to it."""
    if request.htmx:
        return render_blade(request, vault, blade, partial=blade, notice=notice)
    messages.success(request, notice)
    return redirect("vaults:blade", name=vault.name, blade=blade)
