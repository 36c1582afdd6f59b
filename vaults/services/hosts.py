"""Hosts (SPEC 3.13): a worker's announcement, and the host an item's source is read on.

A worker's beat only moves its host's ``last_seen`` (a compare-free update, no audit: it
says nothing new); the first announcement of a host is an operation of its own, audited,
since from then on items may name it. Re-pointing an item to another host is a change of
where its data is read and restored: gated and audited like any change of the item.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from portal import clock, gate
from portal.gate import Check, DomainError

from ..hosts import Host, known_host
from ..models import ProtectedItem
from .items import LIVE_STATES, item_lock, require_item_state


def host_announce(
    *, name: str, version: str, queues: list[str], started_at: datetime
) -> Host | None:
    """Record a worker's beat on host ``name``; the first one of a new host is audited
    (``host_announce``). Returns the new host, or None for a beat of a known one."""
    now = clock.now()
    fields = {"version": version[:50], "queues": sorted(queues), "started_at": started_at}
    if Host.objects.filter(name=name).update(last_seen=now, **fields):
        return None

    def change(check: Check) -> Host:
        host, _ = Host.objects.get_or_create(
            name=name, defaults={"first_seen": check.now, "last_seen": check.now, **fields}
        )
        return host

    return gate.execute(
        "host_announce",
        actor=None,
        target=f"host:{name}",
        change=change,
        after=lambda host: {"host": host.name, "version": host.version, "queues": host.queues},
    )


def item_host_set(*, actor: Any, item: ProtectedItem, host: str) -> ProtectedItem:
    """Read ``item``'s source on ``host`` from its next job on ("" for any host). Jobs
    already queued keep the host they were sent to."""

    def precheck(check: Check) -> None:
        require_item_state(*LIVE_STATES, verb="change host")(check)
        known_host(host)
        if item.source_kind == ProtectedItem.SourceKind.REPLICA:
            raise DomainError(
                "validation_error",
                f"source.host: {item.name} is a replica; its points are copied, not read "
                "from a host.",
                field="source.host",
            )

    def change(check: Check) -> ProtectedItem:
        locked: ProtectedItem = check.facts["item"]
        locked.source_host = host
        locked.save(update_fields=["source_host"])
        return locked

    return gate.execute(
        "item_host_change",
        actor=actor,
        vault=item.vault,
        target=f"item:{item.name}",
        facts={"item": item},
        refresh=item_lock(item),
        before=lambda facts: facts["item"].audit_state(),
        precheck=precheck,
        change=change,
        after=lambda i: i.audit_state(),
    )
