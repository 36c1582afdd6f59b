"""Typing for requests that went through django-htmx's middleware."""

from __future__ import annotations

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


class Echo:
    """A file-like object whose ``write`` returns what it is given, so ``csv.writer`` can
    feed a ``StreamingHttpResponse`` row by row."""

    def write(self, value: str) -> str:
        return value


def require_capability(request: HttpRequest, capability: str) -> None:
    """The one read check of pages: a role without ``capability`` gets a 403."""
    from django.core.exceptions import PermissionDenied

    from .roles import has_capability

    if not has_capability(request.user, capability):
        raise PermissionDenied("Your role does not allow you to see this page.")
