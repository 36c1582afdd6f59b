"""The Backup center's summary tiles (issue 15): what needs a look, each count a link to the
list that shows exactly those rows.

Five aggregate queries (jobs, items, alerts, vaults, approvals), each counting every bucket at
once with ``Count(filter=Q(...))``: the number of queries never depends on the fleet's size.
Jobs of the last day and items' RPO are read from tallies the database keeps in the writing
transaction (``vaults/tallies.py``), so their cost does not grow with the fleet either.
Each count reads the same queryset as the list it links to (``jobs_for_user``,
``items_for_user``'s vaults, the alerts and approvals lists' defaults), with the same
filter, so a tile and its list agree (``tests/test_center_tiles.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.db import connections
from django.db.models import Count, Q
from django.urls import reverse

from portal.models import Alert, Approval
from vaults import selectors, tallies
from vaults.jobs.filters import SINCE
from vaults.models import Job, ProtectedItem, Vault, VaultTally


@dataclass
class Entry:
    label: str
    count: int
    url: str
    tone: str = ""  # a badge class when the count calls for attention (and is not zero)


@dataclass
class Tile:
    key: str
    title: str
    total: int | None = None
    total_url: str = ""
    entries: list[Entry] = field(default_factory=list)


def _url(name: str, **query: str) -> str:
    return f"{reverse(name)}?{urlencode(query)}" if query else reverse(name)


def _counts(queryset: Any, buckets: dict[str, Q]) -> dict[str, int]:
    return queryset.order_by().aggregate(
        **{key: Count("pk", filter=q) for key, q in buckets.items()}
    )


def _tallied(user: Any, queryset: Any) -> bool:
    """Whether the tile may read the database's tallies: they count every vault's rows, and
    only PostgreSQL keeps them."""
    return selectors.sees_every_vault(user) and connections[queryset.db].vendor == "postgresql"


def _vault_counts_from_tally(buckets: dict[str, Q]) -> dict[str, int]:
    """The vault buckets from the database's tally of vaults per setting (at most 18 rows):
    each row stands for ``n`` vaults alike in every setting a bucket looks at, so one vault of
    each kind is judged by ``Vault.security_level`` (which tests/test_portfolio.py holds to
    the SQL spelling the list filters with) and counted ``n`` times."""
    counts = dict.fromkeys(buckets, 0)
    for row in VaultTally.objects.filter(n__gt=0):
        alike = Vault(immutability=row.immutability, soft_delete_state=row.soft_delete_state,
                      resource_guard_id=1 if row.guarded else None)  # fmt: skip
        values = {"all", "imm_" + row.immutability, "sd_" + row.soft_delete_state,
                  "level_" + alike.security_level, "mua" if row.guarded else ""}  # fmt: skip
        for key in values & counts.keys():
            counts[key] += row.n
    return counts


def center_tiles(user: Any, now: datetime) -> list[Tile]:
    vaults = selectors.vaults_for_user(user)

    # Jobs created in the last 24 hours, by status (the jobs list with ?since=24h).
    # A user who sees every vault reads the tallies the jobs' triggers keep (vaults/tallies.py:
    # the same count, without reading a day of jobs); anyone else, and SQLite, counts them.
    jobs = selectors.jobs_for_user(user).filter(created_at__gte=now - SINCE["24h"])
    statuses = Job.Status.choices
    if _tallied(user, jobs):
        by_status = tallies.job_counts_since(now - SINCE["24h"], jobs.db)
        job_counts = {"all": sum(by_status.values())}
        job_counts |= {v: by_status.get(v, 0) for v, _ in statuses}
    else:
        job_counts = _counts(jobs, {"all": Q(), **{v: Q(status=v) for v, _ in statuses}})
    job_tone = {"failed": "refused", "queued": "disabled"}
    jobs_tile = Tile(
        "jobs", "Jobs, last 24 hours", job_counts["all"],
        _url("jobs:list", since="24h"),
        [Entry(label, job_counts[v], _url("jobs:list", status=v, since="24h"),
               job_tone.get(v, "")) for v, label in statuses],
    )  # fmt: skip

    # Protected items and those missing their RPO (the protected items list).
    items = ProtectedItem.objects.all()
    if not selectors.sees_every_vault(user):
        items = items.filter(vault__in=vaults)
    protected = Q(protection_state=ProtectedItem.State.PROTECTED)
    if _tallied(user, items):
        protected_count, met = tallies.rpo_counts(now, items.db)
        item_counts = {"protected": protected_count, "missed": protected_count - met}
    else:
        missed = selectors.rpo_missed_q(now)
        item_counts = _counts(items, {"protected": protected, "missed": missed})
    items_tile = Tile(
        "items", "Protected items", item_counts["protected"],
        _url("items", protection_state="protected"),
        [Entry("RPO missed", item_counts["missed"], _url("items", rpo="missed"),
               "refused"),
         Entry("RPO met", item_counts["protected"] - item_counts["missed"],
               _url("items", rpo="met"))],
    )  # fmt: skip

    # Open alerts by severity (the alerts list shows open alerts by default).
    severities = Alert.Severity.choices
    alerts = Alert.objects.filter(status=Alert.Status.OPEN)
    alert_counts = _counts(alerts, {"all": Q(), **{v: Q(severity=v) for v, _ in severities}})
    alert_tone = {"critical": "refused", "warning": "warn"}
    alerts_tile = Tile(
        "alerts", "Open alerts", alert_counts["all"], _url("alerts", status="open"),
        [Entry(label, alert_counts[v], _url("alerts", status="open", severity=v),
               alert_tone.get(v, "")) for v, label in severities],
    )  # fmt: skip

    # Vaults by security level and by each setting behind it (the portfolio's filters).
    levels = Vault.SecurityLevel.choices
    buckets = {"all": Q(), "mua": Q(resource_guard__isnull=False)}
    buckets |= {f"level_{v}": Q(level_tile=v) for v, _ in levels}
    buckets |= {f"imm_{v}": Q(immutability=v) for v, _ in Vault.Immutability.choices}
    buckets |= {f"sd_{v}": Q(soft_delete_state=v) for v, _ in Vault.SoftDelete.choices}
    if _tallied(user, vaults):
        vault_counts = _vault_counts_from_tally(buckets)
    else:
        vault_counts = _counts(
            vaults.alias(level_tile=selectors.security_level_expression()), buckets
        )
    level_tone = {"poor": "refused", "fair": "warn"}
    levels_tile = Tile(
        "levels", "Vaults by security level", vault_counts["all"], _url("portfolio"),
        [Entry(label, vault_counts[f"level_{v}"], _url("portfolio", security_level=v),
               level_tone.get(v, "")) for v, label in levels],
    )  # fmt: skip
    imm_labels = {"disabled": "Immutability off", "enabled": "Immutable",
                  "locked": "Immutable, locked"}  # fmt: skip
    sd_labels = {"disabled": "Soft delete off", "enabled": "Soft delete on",
                 "always_on": "Always-on"}  # fmt: skip
    settings_tile = Tile(
        "settings", "Vault settings", None, "",
        [*[Entry(imm_labels[v], vault_counts[f"imm_{v}"], _url("portfolio", immutability=v),
                 "refused" if v == "disabled" else "") for v, _ in Vault.Immutability.choices],
         *[Entry(sd_labels[v], vault_counts[f"sd_{v}"], _url("portfolio", soft_delete=v),
                 "refused" if v == "disabled" else "") for v, _ in Vault.SoftDelete.choices],
         Entry("MUA on", vault_counts["mua"], _url("portfolio", mua="true"))],
    )  # fmt: skip

    # Requests waiting for a second person (the approvals inbox shows pending by default).
    pending = Approval.objects.pending(now).order_by()
    approval_counts = _counts(
        pending, {"all": Q(), **{v: Q(kind=v) for v, _ in Approval.Kind.choices}}
    )
    approvals_tile = Tile(
        "approvals", "Pending approvals", approval_counts["all"],
        _url("approvals", status="pending"),
        [Entry(label, approval_counts[v], _url("approvals", status="pending", kind=v), "warn")
         for v, label in Approval.Kind.choices if approval_counts[v]],
    )  # fmt: skip
    return [jobs_tile, items_tile, alerts_tile, approvals_tile, levels_tile, settings_tile]
