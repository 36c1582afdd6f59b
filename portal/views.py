"""Portal pages: home, the approvals inbox, the audit log, users, and the health check."""

from __future__ import annotations

from base64 import b32encode
from collections.abc import Callable
from typing import Any

import segno
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, get_user_model, update_session_auth_hash
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp.util import random_hex

from . import clock, services
from .approval_facts import RETRY_SESSION_KEY, facts_for
from .audit import ChainStatus
from .audit import verify as verify_chain
from .audit_scan import RangeLost
from .filters import AlertFilter, ApprovalFilter, AuditFilter
from .forms import DecisionForm, UserCreateForm, UserUpdateForm, add_domain_error
from .gate import OPERATIONS, DomainError
from .http import HtmxHttpRequest, csv_lines, require_capability
from .models import Alert, Approval, AuditRecord
from .roles import has_capability, role_of

APPROVAL_ACTIONS: dict[str, Callable[..., Approval]] = {
    "approve": services.approval_approve,
    "deny": services.approval_deny,
    "cancel": services.approval_cancel,
    "revoke": services.approval_revoke,
}


@login_not_required
def healthz(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok", content_type="text/plain")


@login_not_required
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page says: send them to the icon."""
    return redirect(static("favicon.svg"), permanent=True)


def _safe_next(request: HttpRequest, fallback: str) -> str:
    """Where a form asked to go back to, if it is a path on this site; else ``fallback``."""
    target = request.POST.get("next", "")
    if target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse(fallback)


def approval_list(request: HttpRequest) -> HttpResponse:
    require_capability(request, "view")
    params = request.GET.copy()
    params.setdefault("status", Approval.Status.PENDING)
    approval_filter = ApprovalFilter(params, queryset=_approvals())
    page = Paginator(approval_filter.qs, 25).get_page(request.GET.get("page"))
    now = clock.now()
    return render(
        request,
        "portal/approvals.html",
        {
            "filter": approval_filter,
            "page": page,
            "rows": [facts_for(approval, now) for approval in page],
            "now": now,
            "status": params.get("status"),
            "two_factor_required": settings.HOLDFAST_APPROVER_2FA == "required",
        },
    )


PENDING_AUTHENTICATOR_KEY = "holdfast_pending_authenticator_key"


def two_factor(request: HttpRequest) -> HttpResponse:
    """Enrol a TOTP authenticator: the key is shown as an otpauth URI and as text, and is kept
    in the session (not the database) until a code from the app and the password confirm it."""
    device = TOTPDevice.objects.filter(user=request.user, confirmed=True).first()
    key = request.session.get(PENDING_AUTHENTICATOR_KEY) if device is None else None
    if device is None and not key:
        key = request.session[PENDING_AUTHENTICATOR_KEY] = random_hex(20)
    error = ""
    if request.method == "POST" and device is None and "otp" in request.POST:
        # ``authenticate`` rather than ``check_password``: login throttling counts wrong ones.
        password_ok = (
            authenticate(
                request,
                username=request.user.get_username(),
                password=request.POST.get("password", ""),
            )
            is not None
        )
        try:
            services.authenticator_enrol(
                actor=request.user,
                key=str(key),
                otp=request.POST.get("otp", "")[:16],
                password_ok=password_ok,
            )
        except DomainError as refusal:
            error = refusal.detail
        else:
            request.session.pop(PENDING_AUTHENTICATOR_KEY, None)
            messages.success(request, "Authenticator enrolled.")
            return redirect("two-factor")
    pending = TOTPDevice(user=request.user, key=key) if key else None
    return render(
        request,
        "portal/two_factor.html",
        {
            "device": device,
            "config_url": pending.config_url if pending else "",
            # The same link as a QR code for the app's camera: an SVG data: URI (CSP img-src
            # allows data:), drawn here so no script or external service sees the key.
            "qr_code": segno.make(pending.config_url, error="m").svg_data_uri(scale=4, border=2)
            if pending
            else "",
            "secret": b32encode(pending.bin_key).decode() if pending else "",
            "error": error,
            "two_factor_required": settings.HOLDFAST_APPROVER_2FA == "required",
        },
    )


def password_change(request: HttpRequest) -> HttpResponse:
    """The owner sets their own password: needed before approving, or being approved by, an
    account whose password the same person chose (docs/security.md)."""
    error = ""
    if request.method == "POST":
        password_ok = (
            authenticate(
                request,
                username=request.user.get_username(),
                password=request.POST.get("current_password", ""),
            )
            is not None
        )
        try:
            services.password_change(
                actor=request.user,
                new_password=request.POST.get("new_password", ""),
                password_ok=password_ok,
            )
        except DomainError as refusal:
            error = refusal.detail
        else:
            # This session stays signed in; the account's other sessions end.
            update_session_auth_hash(request, request.user)  # type: ignore[arg-type]
            messages.success(request, "Password changed. Your API tokens have ended.")
            return redirect("password-change")
    return render(request, "portal/password.html", {"error": error})


def _approval_context(request: HttpRequest, approval: Approval) -> dict[str, Any]:
    now = clock.now()
    return {
        "approval": approval,
        "facts": facts_for(approval, now),
        "now": now,
        "retry": request.session.get(RETRY_SESSION_KEY, {}).get(str(approval.pk), "")
        if approval.requested_by_id == request.user.pk
        else "",
        "two_factor_required": settings.HOLDFAST_APPROVER_2FA == "required",
    }


def approval_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One request with its facts: who asked and when, why, what changes (before → after),
    and the decision (typing the vault's or guard's name for a lock or a guard weakening)."""
    require_capability(request, "view")
    approval = get_object_or_404(_approvals(), pk=pk)
    return render(request, "portal/approval_detail.html", _approval_context(request, approval))


def header_counts(request: HttpRequest) -> HttpResponse:
    """The header's Approvals and Alerts counts, reloaded after an htmx change."""
    return render(request, "_header_counts.html")


def _approvals() -> Any:
    return Approval.objects.select_related(
        "requested_by", "decided_by", "vault", "guard", "account"
    )


@require_POST
def approval_decide(request: HtmxHttpRequest, pk: int, action: str) -> HttpResponse:
    """Approve, deny, cancel or revoke. With htmx, the row of the inbox or the approval's
    page is answered in place, the message shown where the person acted (HtmxFeedbackMiddleware
    swaps it in); without, a message and a redirect back."""
    require_capability(request, "view")
    approval = get_object_or_404(_approvals(), pk=pk)
    service = APPROVAL_ACTIONS.get(action)
    if service is None:
        raise PermissionDenied("Unknown action.")
    form = DecisionForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    kwargs: dict[str, str] = {"reason": reason} if action in {"deny", "revoke"} else {}
    if action in {"approve", "deny"}:
        kwargs["otp"] = request.POST.get("otp", "")[:16]
    if action == "approve":
        # Always given from a page: a forged POST without it is refused for a lock.
        kwargs["confirmation"] = request.POST.get("confirmation", "")[:100]
    error: DomainError | None = None
    try:
        service(actor=request.user, approval=approval, **kwargs)
    except DomainError as refusal:
        error = refusal
        messages.error(request, refusal.detail)
    else:
        messages.success(request, _decided(approval, action))
    if not request.htmx:
        return redirect(_safe_next(request, "approvals"))
    approval = _approvals().get(pk=pk)
    context = {**_approval_context(request, approval), "error": error, "in_row": False}
    template = "portal/approval_detail.html#body"
    if request.htmx.target == f"approval-row-{pk}":
        template, context["in_row"] = "portal/approvals.html#row", True
    status = error.http_status if error is not None else 200
    response = render(request, template, context, status=status)
    # The address bar keeps the page the person is on, never the POST's address.
    response["HX-Replace-Url"] = request.headers.get("HX-Current-URL") or reverse(
        "approval-page", args=[pk]
    )
    return response


def _decided(approval: Approval, action: str) -> str:
    what = f"{approval.get_kind_display()} #{approval.pk}"
    if action == "approve" and approval.kind == Approval.Kind.ELEVATION:
        return (
            f"{what}: approved. {approval.requested_by} can now retry the protected operation "
            "(the elevation ends on its own when its time is up)."
        )
    return {
        "approve": f"{what}: approved, the change is made.",
        "deny": f"{what}: denied, nothing changes.",
        "cancel": f"{what}: cancelled, nothing changes.",
        "revoke": f"{what}: revoked, the elevation has ended.",
    }.get(action, f"{what}: {action} done.")


AUDIT_COLUMNS = [
    "at",
    "actor_name",
    "operation",
    "outcome",
    "code",
    "vault_name",
    "target",
    "source",
    "reason",
    "before",
    "after",
]


def audit_list(request: HttpRequest) -> HttpResponseBase:
    require_capability(request, "view")
    audit_filter = AuditFilter(request.GET, queryset=AuditRecord.objects.all())
    # The operation filter suggests the operations by name (templates/portal/audit.html).
    audit_filter.form.fields["operation"].widget.attrs["list"] = "operation-names"
    # The same date and time picker as every other page (datetime-local, read as UTC).
    for name in ("since", "until"):
        field = audit_filter.form.fields[name]
        field.widget.input_type = "datetime-local"  # type: ignore[attr-defined]
        field.label = f"{field.label} (UTC)"
    if request.GET.get("format") == "csv":
        rows = (
            [getattr(record, column) for column in AUDIT_COLUMNS]
            for record in audit_filter.qs.iterator(chunk_size=2000)
        )
        response = StreamingHttpResponse(csv_lines(_with_header(rows)), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="holdfast-audit.csv"'
        return response
    page = Paginator(audit_filter.qs, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "portal/audit.html",
        {
            "filter": audit_filter,
            "page": page,
            "query": query.urlencode(),
            "operations": sorted(OPERATIONS),
            "chain": _chain_status(full=request.GET.get("chain") == "full"),
        },
    )


def _chain_status(*, full: bool) -> ChainStatus:
    """The most recent links and the local anchors on every view; on request (and in
    ``manage.py audit_verify``) the whole chain and the S3 anchors too, since that reads every
    record and asks every S3 location."""
    try:
        return (
            verify_chain(last=None, remote=True) if full else verify_chain(last=1000, remote=False)
        )
    except RangeLost as lost:
        return ChainStatus(partial=not full, remote_checked=full, unfinished=str(lost))


def _with_header(rows):  # type: ignore[no-untyped-def]
    yield AUDIT_COLUMNS
    yield from rows


def _granted_notice(request: HttpRequest, change: services.AccountChange, done: str) -> None:
    if change.grant is None:
        messages.success(request, done)
        return
    messages.warning(
        request,
        f"{done} Pending approval #{change.grant.pk}: {change.grant.grant_summary} for "
        f"{change.user.get_username()} takes effect once another security admin approves it "
        "in Approvals.",
    )


def user_list(request: HttpRequest) -> HttpResponse:
    """Accounts (SPEC 3.9): superusers manage them, security admins read them."""
    require_capability(request, "read_accounts")
    can_manage = has_capability(request.user, "superuser")
    form = UserCreateForm(request.POST or None)
    if request.method == "POST":
        require_capability(request, "superuser")
    if request.method == "POST" and form.is_valid():
        try:
            change = services.account_create(actor=request.user, **form.cleaned_data)
        except DomainError as error:
            add_domain_error(form, error, keep_field_name=True)
        else:
            _granted_notice(request, change, f"User {change.user.get_username()} created.")
            return redirect("users")
    users = (
        get_user_model()
        .objects.prefetch_related("groups", "role_grants", "totpdevice_set")
        .order_by("username")
    )
    now = clock.now()
    rows = [
        (
            user,
            role_of(user),
            [g for g in user.role_grants.all() if g.effective_status(now) == "pending"],
            any(device.confirmed for device in user.totpdevice_set.all()),  # type: ignore[attr-defined]
        )
        for user in users
    ]
    return render(
        request,
        "portal/users.html",
        {"form": form, "rows": rows, "update_form": UserUpdateForm(), "can_manage": can_manage},
    )


@require_POST
def user_update(request: HttpRequest, pk: int) -> HttpResponse:
    require_capability(request, "superuser")
    user = get_object_or_404(get_user_model(), pk=pk)
    form = UserUpdateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role.")
        return redirect("users")
    try:
        change = services.account_update(actor=request.user, user=user, **form.cleaned_data)
    except DomainError as error:
        messages.error(request, error.detail)
    else:
        _granted_notice(request, change, f"User {user.get_username()} updated.")
    return redirect("users")


@require_POST
def user_authenticator_reset(request: HttpRequest, pk: int) -> HttpResponse:
    require_capability(request, "superuser")
    user = get_object_or_404(get_user_model(), pk=pk)
    try:
        services.authenticator_reset(actor=request.user, user=user)
    except DomainError as error:
        messages.error(request, error.detail)
    else:
        messages.success(
            request,
            f"{user.get_username()}'s authenticator was removed: they enrol a new one on their "
            "Two-factor page, with their password.",
        )
    return redirect("users")


def alert_list(request: HttpRequest) -> HttpResponse:
    require_capability(request, "view")
    params = request.GET.copy()
    params.setdefault("status", Alert.Status.OPEN)
    alert_filter = AlertFilter(params, queryset=Alert.objects.all())
    page = Paginator(alert_filter.qs, 50).get_page(request.GET.get("page"))
    params.pop("page", None)
    return render(
        request,
        "portal/alerts.html",
        {
            "filter": alert_filter,
            "page": page,
            "query": params.urlencode(),
            "can_respond": has_capability(request.user, "respond"),
        },
    )


@require_POST
def alert_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    alert = get_object_or_404(Alert, pk=pk)
    service = {"acknowledge": services.alert_acknowledge, "resolve": services.alert_resolve}
    if action not in service:
        raise PermissionDenied("Unknown action.")
    try:
        service[action](actor=request.user, alert=alert)
    except DomainError as error:
        messages.error(request, error.detail)
    return redirect(_safe_next(request, "alerts"))
