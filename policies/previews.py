"""A policy change's preview as a page shows it: each point's expiry move in words, at most
``PREVIEW_ROWS`` of them. Used by the Backup policies blade (editing a policy) and the Backup
items blade (moving an item to another policy)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from portal.forms import add_domain_error
from portal.gate import DomainError

from .services import Preview

PREVIEW_ROWS = 100


def describe_delta(delta: timedelta) -> str:
    """``30 days later``, ``2 days 1 hour earlier``: how far an expiry moves, in words."""
    hours = round(abs(delta).total_seconds() / 3600)
    days, hours = divmod(hours, 24)
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    if hours or not days:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    return " ".join(parts) + (" later" if delta >= timedelta(0) else " earlier")


def preview_context(form: Any, dry_run: Callable[[], Preview]) -> dict[str, Any]:
    """Run a preview; a validation error goes on the form, which the preview then lists."""
    try:
        preview = dry_run()
    except DomainError as error:
        add_domain_error(form, error)
        return {}
    moves = [(move, describe_delta(move.delta)) for move in preview.moves]
    more = max(0, len(moves) - PREVIEW_ROWS)
    return {"preview": preview, "moves": moves[:PREVIEW_ROWS], "more_moves": more}
