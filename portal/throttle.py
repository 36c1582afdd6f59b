"""Login throttling (django-axes): the backend that refuses locked-out clients, and the answer
they get: the sign-in page with a sentence, or ``{code, detail}`` for the API, both HTTP 429."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

LOCKED_CODE = "login_locked"


def lockout_sentence() -> str:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return (
        f"Too many failed sign-ins for this account from your address: sign-in is locked for "
        f"{minutes} minutes. Wait, then try again; an installation admin can lift the lock "
        "sooner (manage.py axes_reset_username NAME)."
    )


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes, except for calls that carry no request.

    Every network sign-in (the login page, the admin's, the API token endpoint) passes its
    request, so axes sees them all. A call without one comes from code already running on the
    server (the test client's ``login()``, a shell): there is no client to throttle, and axes
    would otherwise refuse it with an error instead of letting the next backend answer.
    """

    def authenticate(  # type: ignore[override]
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    status = 429  # Too Many Requests, as axes answers by default
    if request.path_info.startswith("/api/"):
        return JsonResponse({"code": LOCKED_CODE, "detail": lockout_sentence()}, status=status)
    # Unbound: validating it would try the password again and count one more failure.
    form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
    context = {"form": form, "locked_out": lockout_sentence(), "next": request.POST.get("next", "")}
    return render(request, "registration/login.html", context, status=status)
