"""The one source of "now" for domain code, so tests can inject time instead of sleeping.

Domain code calls ``clock.now()``; tests use ``clock.frozen(dt)`` (or the ``clock`` fixture)
to move time. Production always reads the real UTC clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.utils import timezone

_frozen: datetime | None = None


def now() -> datetime:
    return _frozen if _frozen is not None else timezone.now()


def set_now(value: datetime | None) -> None:
    global _frozen
    if value is not None and timezone.is_naive(value):
        raise ValueError("clock.set_now needs an aware datetime")
    _frozen = value


def advance(delta: timedelta) -> datetime:
    set_now(now() + delta)
    return now()


@contextmanager
def frozen(value: datetime) -> Iterator[datetime]:
    previous = _frozen
    set_now(value)
    try:
        yield value
    finally:
        set_now(previous)
