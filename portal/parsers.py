"""The API's parsers: DRF's, refusing what PostgreSQL cannot store (SPEC 4).

A module of its own because DRF imports the parsers named in its settings while its views
module is still loading; this one imports nothing of DRF's views.
"""

from __future__ import annotations

from typing import Any

from django.http import QueryDict
from rest_framework import exceptions, parsers

from .validators import MAX_JSON_DEPTH, describe, first_form_problem, first_problem


def _refuse_unstorable(data: Any) -> Any:
    """Refuse a body holding a NUL character, a lone surrogate or nesting deeper than
    MAX_JSON_DEPTH, as a ``validation_error`` naming the field, before any view sees it."""
    found = first_form_problem(data) if isinstance(data, QueryDict) else first_problem(data)
    if found is not None:
        path, problem = found
        raise exceptions.ValidationError({path: [f"{problem}."]} if path else describe(found))
    return data


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser; nesting past Python's recursion limit is a 400, not a crash, and
    what PostgreSQL cannot store is refused (``portal.validators``)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ValidationError(
                f"The request nests deeper than {MAX_JSON_DEPTH} levels."
            ) from None
        return _refuse_unstorable(data)


class FormParser(parsers.FormParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return _refuse_unstorable(super().parse(stream, media_type, parser_context))


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        parsed = super().parse(stream, media_type, parser_context)
        _refuse_unstorable(parsed.data)
        return parsed


PARSER_CLASSES = [JSONParser, FormParser, MultiPartParser]
