from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from . import clock
from .models import Alert, Approval
from .roles import ROLE_LABELS, has_capability, role_of


def navigation(request: HttpRequest) -> dict[str, Any]:
    """The top bar's role badge and approvals count, plus the CSP nonce for htmx's script."""
    user = request.user
    context: dict[str, Any] = {"csp_nonce": getattr(request, "csp_nonce", "")}
    if not user.is_authenticated:
        return context
    role = role_of(user)
    context["user_role"] = role
    context["user_role_label"] = ROLE_LABELS.get(role, "Installation admin" if role else "No role")
    context["can_manage"] = has_capability(user, "manage")
    context["can_operate"] = has_capability(user, "operate")
    context["can_approve"] = has_capability(user, "approve")
    context["pending_approvals"] = Approval.objects.pending(clock.now()).count()
    context["open_alerts"] = Alert.objects.filter(status=Alert.Status.OPEN).count()
    # Filing and deciding requests then asks for a fresh authenticator code (templates/_otp.html).
    context["two_factor_required"] = settings.HOLDFAST_APPROVER_2FA == "required"
    return context
