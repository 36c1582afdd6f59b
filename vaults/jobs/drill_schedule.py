"""Scheduled restore drills (SPEC 3.12): a policy's ``restore_drill: {every_days}``.

Time is cut into periods of ``every_days`` local days, counted from 1970-01-01 in the
policy's time zone: a period starts at local midnight, so a DST change makes one period an
hour shorter or longer but never adds or drops one. The period's start in UTC is the drill
job's ``slot``; one drill per (item, slot) is checked under the vault's row lock and backed
by a unique index (``job_one_drill_per_item_slot``), so any number of dispatch runs, and two
beat processes, queue one drill per item per period.

Spread: each item's drill becomes due at a fixed fraction of the period, from a hash of the
item's id, so a vault's drills do not all start together; the dispatcher queues it once
that moment of the current period has passed (a dispatcher that was down catches up later
in the period). Rotation: successive periods cycle through the GFS classes the item's
points carry (daily, weekly, monthly, yearly), so old monthly and yearly points are proven
too; within a class the least recently drilled point goes first, newest first among equals.
Only points the vault tier keeps and that are still current are drilled; an archived point
only while rehydrated (otherwise its class is skipped and the job's params say why).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from policies.rules import TAGS
from portal import clock
from portal.gate import DomainError

from ..models import Job, ProtectedItem, RecoveryPoint
from .drills import drill_root_refusal
from .requests import drill_request

logger = logging.getLogger(__name__)

EPOCH = date(1970, 1, 1)
Tier = RecoveryPoint.Tier
VAULT_TIERS = [Tier.VAULT_STANDARD, Tier.SNAPSHOT_AND_VAULT, Tier.VAULT_ARCHIVE]
ARCHIVED_WAITS = "archived and not rehydrated: drilled only while rehydrated"


@dataclass(frozen=True)
class Slot:
    """One drill period: its number since the epoch and its bounds in UTC."""

    index: int
    start: datetime
    end: datetime

    def moment(self, fraction: float) -> datetime:
        return self.start + (self.end - self.start) * fraction


def drill_slot(every_days: int, timezone: str, now: datetime) -> Slot:
    """The period of ``every_days`` local days that holds ``now`` in ``timezone``."""
    zone = ZoneInfo(timezone)
    index = (now.astimezone(zone).date() - EPOCH).days // every_days
    first = EPOCH + timedelta(days=index * every_days)

    def midnight(day: date) -> datetime:
        return datetime.combine(day, time(0), zone).astimezone(UTC)

    return Slot(index, midnight(first), midnight(first + timedelta(days=every_days)))


def drill_offset(item_id: int) -> float:
    """Where in each period the item's drill is due, as a fraction in [0, 1); stable."""
    digest = hashlib.blake2b(f"drill:{item_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def drill_points(item: ProtectedItem, now: datetime) -> list[RecoveryPoint]:
    """The item's points a drill may prove: in the vault tier, current, not known corrupt;
    newest first."""
    points = list(
        item.recovery_points.filter(
            tier__in=VAULT_TIERS, expires_at__gt=now, corrupted_at__isnull=True
        ).order_by("-created_at", "-pk")
    )
    for point in points:
        point.item, point.vault = item, item.vault
    return points


def drill_choice(
    points: list[RecoveryPoint], index: int, now: datetime
) -> tuple[RecoveryPoint | None, dict[str, Any]]:
    """The point to drill in period ``index`` (points newest first) and why: the GFS class
    it stands for and the classes skipped on the way."""
    classes = [tag for tag in TAGS if any(tag in point.tags for point in points)]
    if not classes:  # untagged points only (on-demand backups): the newest
        classes = [""]
    start = index % len(classes)
    skipped: dict[str, str] = {}
    for tag in classes[start:] + classes[:start]:
        of_class = [p for p in points if not tag or tag in p.tags]
        ready = [p for p in of_class if not p.is_archived or p.is_rehydrated(now)]
        if not ready:
            skipped[tag] = ARCHIVED_WAITS
            continue
        # min() keeps the first of equals: never drilled first, then the newest.
        point = min(ready, key=lambda p: (p.drill or {}).get("at", ""))
        return point, {"gfs": tag or "newest", "skipped": skipped}
    return None, {"skipped": skipped}


def drills_dispatch(*, now: datetime | None = None) -> list[Job]:
    """Queue the drill of every protected item with ``restore_drill`` whose moment in the
    current period has passed and whose period has no drill yet. Safe to run any number of
    times, concurrently."""
    now = now or clock.now()
    jobs: list[Job] = []
    root_refusal = drill_root_refusal()
    if root_refusal is not None:  # once per run, not a refused request per item
        logger.warning("scheduled drills wait: %s", root_refusal)
        return jobs
    items = ProtectedItem.objects.filter(
        protection_state=ProtectedItem.State.PROTECTED,
        policy__restore_drill_every_days__isnull=False,
    ).select_related("policy", "vault")
    for item in items:
        policy = item.policy
        try:
            slot = drill_slot(policy.restore_drill_every_days or 1, policy.timezone, now)
        except (ZoneInfoNotFoundError, ValueError):
            logger.warning("drill of %s not scheduled: time zone %r", item.name, policy.timezone)
            continue
        if now < slot.moment(drill_offset(item.pk)):
            continue
        if Job.objects.filter(kind=Job.Kind.DRILL, item=item, slot=slot.start).exists():
            continue
        point, params = drill_choice(drill_points(item, now), slot.index, now)
        if point is None:
            logger.info(
                "scheduled drill of %s (period from %s) waits: no point to drill%s",
                item.name,
                slot.start.isoformat(),
                "".join(f"; {tag}: {why}" for tag, why in params["skipped"].items()),
            )
            continue
        try:
            jobs.append(drill_request(actor=None, point=point, slot=slot.start, params=params))
        except DomainError as refusal:  # another dispatcher was first
            logger.info("scheduled drill of %s not queued: %s", item.name, refusal.detail)
    return jobs
