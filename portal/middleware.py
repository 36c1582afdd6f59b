from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.middleware import LoginRequiredMiddleware as _LoginRequired
from django.http import HttpRequest, HttpResponse

from .gate import entry_point


class EntryPointMiddleware:
    """Tag every gate decision made while serving a request with where it came from."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        name = (
            "api" if path.startswith("/api/") else "admin" if path.startswith("/admin/") else "web"
        )
        with entry_point(name):
            return self.get_response(request)


class LoginRequiredMiddleware(_LoginRequired):
    """Every page needs a login; the API authenticates (tokens, sessions) on its own."""

    def process_view(self, request, view_func, view_args, view_kwargs):  # type: ignore[no-untyped-def]
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
