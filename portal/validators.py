"""Text Holdfast can store: the one check for NUL characters, lone surrogates and deep JSON.

PostgreSQL refuses a NUL character in ``text`` and ``jsonb`` and a lone surrogate in ``jsonb``,
and psycopg cannot encode a lone surrogate at all, so such a value reaching a query is a
server error. No name, tag, region, path or sentence in Holdfast needs either, so they are
refused at every door with a ``validation_error`` naming the field (SPEC 4): by the API's
parsers (``portal.api``), by the request middleware (path, query string, headers), by Django's
form fields (which already refuse NUL), and by the services that take free text, for callers
that reach them without a form or a serializer (commands, the shell, tests).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError

from .errors import DomainError

# Deeper than any document the API takes (a policy is three levels), shallow enough to walk.
MAX_JSON_DEPTH = 32


def text_problem(value: str) -> str | None:
    """What makes ``value`` unstorable, as a clause ("contains a NUL character"), or None."""
    if "\x00" in value:
        return "contains a NUL character, which cannot be stored"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"contains a lone surrogate (U+{ord(value[exc.start]):04X}), which is not valid Unicode"
        )
    return None


def time_problem(value: datetime) -> str | None:
    """A time outside Python's calendar once in UTC (9999-12-31T23:59-14:00): PostgreSQL
    would store it, and no row holding it could be read back."""
    try:
        if value.tzinfo is not None:
            value.astimezone(UTC)
    except OverflowError:
        return "falls outside the years 1 to 9999 in UTC"
    return None


def first_problem(data: Any, *, field: str = "") -> tuple[str, str] | None:
    """The first unstorable string in ``data`` (a string, or JSON-like lists and dicts, keys
    included) as ``(field path, clause)``, or None. Also refuses nesting deeper than
    :data:`MAX_JSON_DEPTH` and times :func:`time_problem` refuses. Iterative, so hostile depth
    cannot exhaust the stack; the hostile value itself is never echoed (a key that is the
    problem names its parent)."""
    stack: list[tuple[str, Any, int]] = [(field, data, 0)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, str | datetime):
            problem = text_problem(value) if isinstance(value, str) else time_problem(value)
            if problem:
                return path, problem
            continue
        if isinstance(value, dict):
            children = list(value.items())
        elif isinstance(value, list | tuple):
            children = list(enumerate(value))
        else:
            continue
        if depth >= MAX_JSON_DEPTH:
            return path, f"nests deeper than {MAX_JSON_DEPTH} levels"
        for key, _child in children:
            problem = text_problem(key) if isinstance(key, str) else None
            if problem:
                return path, f"has a key that {problem}"
        # Reversed, so that the first problem in document order is the one reported.
        for key, child in reversed(children):
            stack.append((f"{path}.{key}" if path else str(key), child, depth + 1))
    return None


def first_form_problem(data: Any) -> tuple[str, str] | None:
    """:func:`first_problem` for form data or a query string (a ``QueryDict``): the field
    whose value is unstorable, or ``""`` for a field name that is."""
    for key, values in data.lists():
        problem = text_problem(key)
        if problem:
            return "", f"has a field name that {problem}"
        for value in values:
            problem = text_problem(value) if isinstance(value, str) else None
            if problem:
                return key, problem
    return None


def describe(found: tuple[str, str]) -> str:
    """``field: clause.`` (or ``The request clause.`` for the document itself)."""
    path, problem = found
    return f"{path}: {problem}." if path else f"The request {problem}."


def validate_storable(value: Any) -> None:
    """A Django validator (forms, serializers, model fields) for :func:`first_problem`."""
    found = first_problem(value)
    if found:
        raise ValidationError(describe(found), code="unstorable")


def check_storable(**fields: Any) -> None:
    """Refuse the first unstorable value among ``fields`` with a ``validation_error`` naming
    it; services call this before the gate, so the audit record never holds the value."""
    for name, value in fields.items():
        found = first_problem(value, field=name)
        if found:
            raise DomainError("validation_error", describe(found), field=found[0])
