"""Statement-level triggers that keep sums over a table's rows (PostgreSQL transition
tables): the vaults' storage totals (vaults/triggers.py) and the tiles' tallies
(vaults/tallies.py) are each three of them."""

from __future__ import annotations

from typing import Any

import pgtrigger


def statement_triggers(
    name: str, rows: str, deltas: Any, row_sql: Any, update_sql: str
) -> list[pgtrigger.Trigger]:
    """The three triggers keeping one sum, named ``<name>_insert|_delete|_update``: ``deltas``
    applies rows of changes;
    inserted rows count in (``row_sql(alias, table, "+")``), deleted rows count out, and an
    update moves each changed row (``update_sql`` over ``old_<rows>`` and ``new_<rows>``)."""
    new, old = f"new_{rows}", f"old_{rows}"
    common: dict[str, Any] = {"when": pgtrigger.After, "level": pgtrigger.Statement}
    return [
        pgtrigger.Trigger(
            name=f"{name}_insert",
            operation=pgtrigger.Insert,
            referencing=pgtrigger.Referencing(new=new),
            func=deltas(row_sql("n", new, "+")),
            **common,
        ),
        pgtrigger.Trigger(
            name=f"{name}_delete",
            operation=pgtrigger.Delete,
            referencing=pgtrigger.Referencing(old=old),
            func=deltas(row_sql("o", old, "-")),
            **common,
        ),
        pgtrigger.Trigger(
            name=f"{name}_update",
            operation=pgtrigger.Update,
            referencing=pgtrigger.Referencing(old=old, new=new),
            func=deltas(update_sql),
            **common,
        ),
    ]
