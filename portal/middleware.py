from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.middleware import LoginRequiredMiddleware as _LoginRequired
from django.contrib.messages import get_messages
from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware as _SessionMiddleware
from django.core.exceptions import SuspiciousOperation
from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.template.loader import render_to_string
from django.utils.html import escape
from django_htmx.http import trigger_client_event

from .gate import entry_point
from .validators import describe, first_form_problem

logger = logging.getLogger(__name__)

_PLAIN_PAGE = (
    "<!doctype html><html lang=en><head><meta charset=utf-8>"
    "<title>{title} - Holdfast</title></head>"
    "<body><h1>{title}</h1><p>{sentence}</p></body></html>"
)


def request_too_large_body() -> dict[str, str]:
    """The API's ``{code, detail}`` answer to a body over the size limit (status 413)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0
    return {
        "code": "request_too_large",
        "detail": f"The request body is larger than this server accepts ({limit:,} bytes). "
        "Send less data at a time.",
    }


class RequestGuardMiddleware:
    """Hostile requests are answered here, before anything reads them (SPEC 4): a body over
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413 ``request_too_large``), a NUL character in the path
    (404: no name holds one), in the query string or in a header (400 ``validation_error``).
    A cookie holding a NUL is dropped, so a planted one signs its victim out rather than
    locking them out. The API answers ``{code, detail}``; pages a plain page.

    PostgreSQL refuses NUL in text, so any of these reaching a lookup was a 500; bodies are
    checked by the parsers and forms (``portal.validators``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self._refusal(request) or self.get_response(request)

    def _refusal(self, request: HttpRequest) -> HttpResponseBase | None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0  # Django reads no body it cannot size
        if limit is not None and length > limit:
            return _answer(request, 413, "Request too large", request_too_large_body())
        if "\x00" in request.path_info:
            return _answer(
                request,
                404,
                "Not found",
                {"code": "not_found", "detail": "Nothing here: no name contains a NUL character."},
            )
        for header, value in request.META.items():
            if header.startswith("HTTP_") and header != "HTTP_COOKIE" and "\x00" in str(value):
                name = header[5:].replace("_", "-").title()
                return _invalid(request, name, f"The {name} header contains a NUL character.")
        for cookie, value in list(request.COOKIES.items()):
            if "\x00" in cookie or "\x00" in value:
                del request.COOKIES[cookie]
        try:
            found = first_form_problem(request.GET)
        except SuspiciousOperation as exc:  # too many fields
            return _invalid(request, "query", f"The query string was refused: {exc}")
        if found is not None:
            field = found[0] or "query"
            return _invalid(request, field, describe((field, found[1])))
        return None


def _invalid(request: HttpRequest, field: str, detail: str) -> HttpResponseBase:
    body = {"code": "validation_error", "detail": detail, "field": field}
    return _answer(request, 400, "Bad request", body)


def _answer(request: HttpRequest, status: int, title: str, body: dict[str, str]) -> HttpResponse:
    if request.path_info.startswith("/api/"):
        return JsonResponse(body, status=status)
    # A plain page: nothing of the request reaches a template or the database.
    return HttpResponse(
        _PLAIN_PAGE.format(title=title, sentence=escape(body["detail"])), status=status
    )


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


DATABASE_ERRORS = (OperationalError, InterfaceError)
DATABASE_UNAVAILABLE = (
    "The database cannot be reached right now (it may be restarting). Try again in a few "
    "seconds; if you were making a change, check whether it was recorded before repeating it."
)
_PAGE = (
    "<!doctype html><html lang=en><head><meta charset=utf-8>"
    "<title>Database unavailable - Holdfast</title></head>"
    "<body><h1>Database unavailable</h1><p>{sentence}</p></body></html>"
)


def database_unavailable_body() -> dict[str, str]:
    """The API's ``{code, detail}`` answer to a lost database connection (status 503)."""
    return {"code": "database_unavailable", "detail": DATABASE_UNAVAILABLE}


def database_unavailable_response(request: HttpRequest) -> HttpResponse:
    response: HttpResponse
    if request.path_info.startswith("/api/"):
        response = JsonResponse(database_unavailable_body(), status=503)
    else:
        # A plain page: the site's templates would query the database again.
        response = HttpResponse(_PAGE.format(sentence=DATABASE_UNAVAILABLE), status=503)
    response["Retry-After"] = "5"
    response["Cache-Control"] = "no-store"
    return response


@receiver(got_request_exception, dispatch_uid="holdfast-database-unavailable")
def _remember_database_error(
    sender: Any, request: HttpRequest | None = None, **kwargs: Any
) -> None:
    if request is not None and isinstance(sys.exc_info()[1], DATABASE_ERRORS):
        request.holdfast_database_error = True  # type: ignore[attr-defined]


def _caused_by_database(error: BaseException | None) -> bool:
    for _ in range(10):  # the chain is short: SessionInterrupted <- UpdateError <- ours
        if error is None:
            return False
        if isinstance(error, DATABASE_ERRORS):
            return True
        error = error.__cause__ or error.__context__
    return False


class SessionMiddleware(_SessionMiddleware):
    """Django's sessions, and a database that cannot be reached answered with a 503 and a
    sentence (``{code: database_unavailable, detail}`` under ``/api/``), never a 500 trace.

    The session layer is where a request meets the database outside its view, so the outage
    is handled here, in four places: ``process_view`` loads the session and the user before
    the login check does (its error would become a 500 inside Django); ``process_exception``
    covers the view; ``process_response`` covers the session's own reads and its save on the
    way out (a failed save would be Django's 400 "session interrupted"); any other
    middleware's database error, which Django turns into a 500 before this one sees it, is
    recognised by the ``got_request_exception`` signal. A 5xx answer saves no session, so an
    outage signs nobody out.
    """

    async_capable = False  # the __call__ below is synchronous; Django adapts it under ASGI

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = cast(HttpResponseBase, super().__call__(request))
        if response.status_code == 500 and getattr(request, "holdfast_database_error", False):
            return database_unavailable_response(request)
        return response

    def process_view(
        self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        try:
            if hasattr(request, "user"):
                request.user.is_authenticated  # noqa: B018  (loads the session and the user)
        except DATABASE_ERRORS as exc:
            return self._unavailable(request, exc)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DATABASE_ERRORS):
            return None
        return self._unavailable(request, exception)

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if getattr(request, "holdfast_database_error", False):
            return response  # nothing to save on a 5xx, and reading the session would fail
        try:
            return super().process_response(request, response)
        except (SessionInterrupted, *DATABASE_ERRORS) as exc:
            if not _caused_by_database(exc):
                raise
            return self._unavailable(request, exc)

    def _unavailable(self, request: HttpRequest, error: BaseException) -> HttpResponse:
        request.holdfast_database_error = True  # type: ignore[attr-defined]
        logger.warning("database unavailable while serving %s: %s", request.path, error)
        return database_unavailable_response(request)


# Sent after every htmx request that may have changed something: static/js/holdfast.js then
# reloads the header's Approvals and Alerts counts (templates/_header_counts.html).
CHANGED_EVENT = "holdfast:changed"


class HtmxFeedbackMiddleware:
    """Feedback where the person acted, for htmx requests: the messages a view queued are
    swapped into the page's messages region out of band (instead of waiting for the next
    page), and a change (any non-GET request) tells the page to refresh the header counts."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if not getattr(request, "htmx", False) or not isinstance(response, HttpResponse):
            return response
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            trigger_client_event(response, CHANGED_EVENT, {})
        if (
            300 <= response.status_code < 400
            or "HX-Redirect" in response
            or "HX-Location" in response
            or not response.get("Content-Type", "").startswith("text/html")
        ):
            return response
        queued = list(get_messages(request))
        if queued:
            response.content += render_to_string(
                "_messages.html", {"messages": queued, "oob": True}, request=request
            ).encode()
        return response
