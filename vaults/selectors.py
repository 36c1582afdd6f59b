"""Reads: which vaults (and jobs) a user may see, and the annotated querysets of the portfolio,
the protected items view, the dashboard and the vault API; a point's files, from its store.

Everything a list row shows is computed by the database as an annotation (a ``Case`` or a
correlated subquery), so a page costs the same number of queries at 10 vaults and at 10,000.
Correlated subqueries run only for the rows of the page asked for, unless the list is sorted
by them.

Security level (SPEC 3.8) has two spellings that must agree: ``Vault.security_level`` (a
property, for one vault in hand) and :func:`security_level_expression` (SQL, for filtering,
sorting and counting). ``tests/test_portfolio.py`` checks them against each other.

RPO met (also explained on the protected items page): a *protected* item
meets its RPO when its last successful backup (``last_backup_at``) is no older than its
policy's interval plus one hour of grace: ``interval_hours`` hours for hourly (enhanced)
policies, one day for daily, seven days for weekly. Items whose protection is stopped or
soft-deleted have no RPO to meet; they are neither "met" nor "missed".
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import (
    Case,
    CharField,
    Count,
    DateField,
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    Func,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, TruncDate
from django.shortcuts import get_object_or_404

from policies.rules import DEFAULT_INTERVAL_HOURS, HOURLY_INTERVALS
from portal.models import Alert
from portal.roles import has_capability

from .locations import archive_store, vault_store
from .models import Host, Job, ProtectedItem, RecoveryPoint, Vault
from .storage import entries_of

RPO_GRACE = timedelta(hours=1)


# --- access: one way to fetch a vault for a user (pages and the API) -------------------------


def vaults_for_user(user: Any) -> QuerySet[Vault]:
    """Vaults the user may see; every role sees the whole portfolio today."""
    if not has_capability(user, "view"):
        return Vault.objects.none()
    return Vault.objects.select_related("resource_guard")


def sees_every_vault(user: Any) -> bool:
    """Whether ``vaults_for_user`` is every vault (true of every role that may view, today).
    Lists of items and jobs then need no ``vault IN (every vault)`` filter, which on a large
    fleet costs a join for nothing; scope vaults per user and this answers False."""
    return has_capability(user, "view")


def _of_visible_vaults(queryset: QuerySet[Any], user: Any) -> QuerySet[Any]:
    if sees_every_vault(user):
        return queryset
    return queryset.filter(vault__in=vaults_for_user(user))


def get_vault_for_user(user: Any, name: str) -> Vault:
    if not has_capability(user, "view"):
        raise PermissionDenied("Your role does not allow you to see vaults.")
    return get_object_or_404(vaults_for_user(user), name=name)


def jobs_for_user(user: Any) -> QuerySet[Job]:
    """Jobs of the vaults the user may see (sweeps, which span vaults, to everyone who views)."""
    if not has_capability(user, "view"):
        raise PermissionDenied("Your role does not allow you to see jobs.")
    if sees_every_vault(user):  # a job's vault is one of them, or none (sweeps)
        return Job.objects.all()
    return Job.objects.filter(vault__in=vaults_for_user(user)) | Job.objects.filter(
        vault__isnull=True
    )


def point_browse(point: RecoveryPoint, path: str = "") -> list[Any]:
    """A point's entries under ``path``, read from whichever tier holds its manifest, so even
    an archived point can be browsed without rehydrating it."""
    store = vault_store(point.vault)
    if store.has_point(point.storage_key):
        return store.list_dir(point.storage_key, path)
    manifest = archive_store(point.vault).manifest(point.storage_key)
    return entries_of(manifest, path, point.storage_key)


def job_alerts_muted(alert: Alert) -> bool:
    """Job alerts of a vault whose owners muted them are not delivered (still listed);
    registered with the kernel's alerts in ``VaultsConfig.ready``."""
    if alert.category != Alert.Category.JOB or not alert.vault_name:
        return False
    return Vault.objects.filter(name=alert.vault_name, mute_job_alerts=True).exists()


# --- the portfolio ---------------------------------------------------------------------------

# Storage columns: the tiers of SPEC 3.7 grouped as a person reads a bill.
STORAGE_TIERS: dict[str, tuple[str, ...]] = {
    "snapshot": (RecoveryPoint.Tier.SNAPSHOT,),
    "standard": (RecoveryPoint.Tier.SNAPSHOT_AND_VAULT, RecoveryPoint.Tier.VAULT_STANDARD),
    "archive": (RecoveryPoint.Tier.VAULT_ARCHIVE,),
}
STORAGE_LABELS = {"snapshot": "Snapshot", "standard": "Vault-standard", "archive": "Vault-archive"}

# The annotations with_portfolio_columns() adds to each vault.
PORTFOLIO_COLUMNS = (
    "level_db",
    "item_count",
    "last_backup_status",
    "last_backup_at",
    *[f"storage_{name}" for name in STORAGE_TIERS],
)

LAST_BACKUP_CHOICES = [
    ("completed", "Completed"),
    ("failed", "Failed"),
    ("running", "Running"),
    ("queued", "Queued"),
    ("none", "No backup yet"),
]


def security_level_expression() -> Case:
    """``Vault.security_level`` in SQL (SPEC 3.8), first matching rule wins."""
    level = Vault.SecurityLevel
    return Case(
        When(
            immutability=Vault.Immutability.LOCKED,
            soft_delete_state=Vault.SoftDelete.ALWAYS_ON,
            resource_guard__isnull=False,
            then=Value(level.EXCELLENT),
        ),
        When(
            Q(immutability__in=[Vault.Immutability.ENABLED, Vault.Immutability.LOCKED])
            & ~Q(soft_delete_state=Vault.SoftDelete.DISABLED),
            then=Value(level.GOOD),
        ),
        When(~Q(soft_delete_state=Vault.SoftDelete.DISABLED), then=Value(level.FAIR)),
        default=Value(level.POOR),
        output_field=CharField(),
    )


def security_level_rank() -> Case:
    """Sort key: excellent first when ascending."""
    order = [Vault.SecurityLevel.EXCELLENT, "good", "fair", "poor"]
    return Case(
        *[When(level_db=value, then=Value(rank)) for rank, value in enumerate(order)],
        output_field=IntegerField(),
    )


def _last_backup(vault_field: str, column: str) -> Subquery:
    latest = (
        Job.objects.filter(**{vault_field: OuterRef("pk")}, kind=Job.Kind.BACKUP)
        .order_by("-created_at", "-id")
        .values(column)[:1]
    )
    output: DateTimeField[Any, Any] | CharField[Any, Any] = (
        DateTimeField() if column == "created_at" else CharField()
    )
    return Subquery(latest, output_field=output)


def with_portfolio_columns(queryset: QuerySet[Vault]) -> QuerySet[Vault]:
    """Add every portfolio column a row needs, as annotations (no per-row queries).

    ``level_db`` is the security level; ``item_count``; ``storage_<tier>`` in bytes, the
    vault's totals that database triggers keep (``Vault.stored_<tier>_bytes``, and
    ``stored_item_count``), so sorting 10,000 vaults by storage or items reads an index
    instead of summing every point. ``last_backup_status`` and ``last_backup_at`` (the
    vault's newest backup job) are columns the jobs' triggers keep (vaults/tallies.py).
    """
    storage = {f"storage_{name}": F(f"stored_{name}_bytes") for name in STORAGE_TIERS}
    return queryset.annotate(
        level_db=security_level_expression(), item_count=F("stored_item_count"), **storage
    )


def portfolio_vaults(user: Any) -> QuerySet[Vault]:
    """The vaults ``user`` may see, with the portfolio's columns."""
    return with_portfolio_columns(vaults_for_user(user))


def storage_of(vault: Vault) -> list[tuple[str, int]]:
    """(label, bytes) per tier for a vault that came through :func:`with_portfolio_columns`."""
    return [(STORAGE_LABELS[name], getattr(vault, f"storage_{name}", 0)) for name in STORAGE_TIERS]


# --- protected items ---------------------------------------------------------------------


def rpo_met_q(now: datetime) -> Q:
    """Protected items whose last successful backup is within their policy's RPO window."""
    protected = Q(protection_state=ProtectedItem.State.PROTECTED)
    windows = Q(policy__frequency="daily", last_backup_at__gte=now - timedelta(days=1) - RPO_GRACE)
    windows |= Q(
        policy__frequency="weekly", last_backup_at__gte=now - timedelta(days=7) - RPO_GRACE
    )
    hourly = Q(policy__frequency="hourly")
    for hours in HOURLY_INTERVALS:
        interval = Q(policy__interval_hours=hours)
        if hours == DEFAULT_INTERVAL_HOURS:
            interval |= Q(policy__interval_hours__isnull=True)
        windows |= (
            hourly & interval & Q(last_backup_at__gte=now - timedelta(hours=hours) - RPO_GRACE)
        )
    return protected & windows


def rpo_window(policy: Any) -> timedelta:
    """How old an item's last good backup may be under ``policy`` (as ``rpo_met_q`` says)."""
    if policy.frequency == "weekly":
        return timedelta(days=7)
    if policy.frequency == "hourly":
        return timedelta(hours=policy.interval_hours or DEFAULT_INTERVAL_HOURS)
    return timedelta(days=1)


def item_rpo(item: ProtectedItem, now: datetime) -> dict[str, Any]:
    """One item's RPO state, as ``rpo_met_q`` judges it: ``met``, ``missed`` or ``none``
    (protection stopped or soft-deleted), the window and when the next backup is due by."""
    window = rpo_window(item.policy)
    state = "none"
    due = None
    if item.protection_state == ProtectedItem.State.PROTECTED:
        last = item.last_backup_at
        state = "met" if last is not None and last >= now - window - RPO_GRACE else "missed"
        due = last + window + RPO_GRACE if last is not None else None
    return {"state": state, "window": window, "grace": RPO_GRACE, "due": due}


def rpo_missed_q(now: datetime) -> Q:
    return Q(protection_state=ProtectedItem.State.PROTECTED) & ~rpo_met_q(now)


def items_for_user(user: Any, now: datetime) -> QuerySet[ProtectedItem]:
    """Protected items across the vaults ``user`` may see, with last backup and RPO columns.

    ``rpo_state`` is "met", "missed" or "" (not protected: no RPO applies).
    """
    return (
        _of_visible_vaults(ProtectedItem.objects.all(), user)
        .select_related("vault", "policy")
        .annotate(
            last_backup_status=_last_backup("item", "status"),
            rpo_state=Case(
                When(rpo_met_q(now), then=Value("met")),
                When(protection_state=ProtectedItem.State.PROTECTED, then=Value("missed")),
                default=Value(""),
                output_field=CharField(),
            ),
        )
    )


# --- restore drills (SPEC 3.12) ---------------------------------------------------------

# A drill is due at a fixed moment of each period (vaults/jobs/drill_schedule.py), so passed
# drills come one period apart; the grace covers the dispatch interval and the drill's run.
DRILL_GRACE = timedelta(days=1)
DRILL_CHOICES = [
    ("overdue", "Overdue"),
    ("ok", "Up to date"),
    ("off", "Not scheduled"),
]


def last_good_drill() -> Subquery:
    """When the item's last passed drill ended (a drill job completes only if it passed)."""
    return Subquery(
        Job.objects.filter(item=OuterRef("pk"), kind=Job.Kind.DRILL, status=Job.Status.COMPLETED)
        .order_by("-ended_at")
        .values("ended_at")[:1],
        output_field=DateTimeField(),
    )


def _drill_deadline(now: datetime) -> Any:
    """``now`` less the grace and the item's policy's drill period, in SQL. SQLite keeps a
    duration as microseconds, PostgreSQL multiplies an interval."""
    every = F("policy__restore_drill_every_days")
    if connection.vendor == "postgresql":
        period = ExpressionWrapper(every * Value(timedelta(days=1)), output_field=DurationField())
    else:
        period = ExpressionWrapper(every * Value(86_400_000_000), output_field=DurationField())
    return ExpressionWrapper(
        Value(now - DRILL_GRACE, output_field=DateTimeField()) - period,
        output_field=DateTimeField(),
    )


def filter_drill(queryset: QuerySet[ProtectedItem], value: str, now: datetime) -> Any:
    """Items by restore drill state. ``overdue``: protected, its policy schedules drills, and
    no drill passed within the last period (plus grace) although the item is older than
    that; ``ok``: drills scheduled and not overdue; ``off``: the policy schedules none.
    Two correlated subqueries in one query, however many items."""
    if value == "off":
        return queryset.filter(policy__restore_drill_every_days__isnull=True)
    scheduled = queryset.filter(
        protection_state=ProtectedItem.State.PROTECTED,
        policy__restore_drill_every_days__isnull=False,
    ).alias(last_good_drill_at=last_good_drill(), drill_deadline=_drill_deadline(now))
    if value == "overdue":
        return scheduled.filter(
            Q(last_good_drill_at__lt=F("drill_deadline"))
            | Q(last_good_drill_at__isnull=True, created_at__lt=F("drill_deadline"))
        )
    return scheduled.filter(
        Q(last_good_drill_at__gte=F("drill_deadline"))
        | Q(last_good_drill_at__isnull=True, created_at__gte=F("drill_deadline"))
    )


def filter_last_backup(queryset: QuerySet[Any], value: str) -> QuerySet[Any]:
    """``last_backup_status`` annotation equal to ``value``; "none" means never backed up."""
    if value == "none":
        return queryset.filter(last_backup_status__isnull=True)
    return queryset.filter(last_backup_status=value)


# --- dashboard ---------------------------------------------------------------------------


def dashboard_figures(user: Any, now: datetime, *, days: int = 14) -> dict[str, Any]:
    """The dashboard's cards, one aggregate query each (six queries in all)."""
    vaults = vaults_for_user(user)
    # As the jobs list counts them (sweeps included), so a status links to its rows.
    jobs = jobs_for_user(user).filter(created_at__gte=now - timedelta(hours=24))
    jobs_by_status = dict(jobs.order_by().values_list("status").annotate(n=Count("pk")))
    items = _of_visible_vaults(ProtectedItem.objects.all(), user)
    rpo = items.aggregate(
        met=Count("pk", filter=rpo_met_q(now)),
        protected=Count("pk", filter=Q(protection_state=ProtectedItem.State.PROTECTED)),
    )
    # One scan of the points gives both storage now (by tier) and over time: bytes written per
    # day by tier, from the points' created_at (points deleted since are not counted; the tier
    # is today's). Points older than the window group under day NULL.
    start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (
        _of_visible_vaults(RecoveryPoint.objects.all(), user)
        .order_by()
        .annotate(
            day=Case(
                When(created_at__gte=start, then=TruncDate("created_at")),
                default=None,
                output_field=DateField(),
            )
        )
        .values_list("tier", "day")
        .annotate(total=Sum("stored_bytes"))
    )
    day_list = [(start + timedelta(days=i)).date() for i in range(days)]
    tier_group = {tier: name for name, tiers in STORAGE_TIERS.items() for tier in tiers}
    storage_now = dict.fromkeys(STORAGE_TIERS, 0)
    daily = {name: [0] * days for name in STORAGE_TIERS}
    for tier, day, total in rows:
        storage_now[tier_group[tier]] += total or 0
        index = -1 if day is None else (day - day_list[0]).days
        if 0 <= index < days:
            daily[tier_group[tier]][index] += total or 0
    levels = dict(
        vaults.order_by()
        .annotate(level_db=security_level_expression())
        .values_list("level_db")
        .annotate(n=Count("pk"))
    )
    alerts = dict(
        Alert.objects.filter(status=Alert.Status.OPEN)
        .order_by()
        .values_list("severity")
        .annotate(n=Count("pk"))
    )
    return {
        "jobs_by_status": [(label, jobs_by_status.get(v, 0), v) for v, label in Job.Status.choices],
        "jobs_total": sum(jobs_by_status.values()),
        "rpo_met": rpo["met"],
        "rpo_missed": rpo["protected"] - rpo["met"],
        "rpo_protected": rpo["protected"],
        "storage_now": [(STORAGE_LABELS[n], storage_now[n], n) for n in STORAGE_TIERS],
        "storage_total": sum(storage_now.values()),
        "storage_days": [d.isoformat() for d in day_list],
        "storage_daily": daily,
        "levels": [(label, levels.get(v, 0), v) for v, label in Vault.SecurityLevel.choices],
        "alerts": [(label, alerts.get(v, 0), v) for v, label in Alert.Severity.choices],
    }


def storage_lock_summary(vault: Vault, now: datetime) -> dict[str, Any]:
    """What S3 confirmed about the vault's locks (the lock_verify job): over its unexpired
    vault- and archive-tier points, the earliest confirmed lock end, the latest read, how
    many were read back and how many had a missing or short lock. One query."""
    return (
        RecoveryPoint.objects.filter(vault=vault, expires_at__gt=now)
        .exclude(tier=RecoveryPoint.Tier.SNAPSHOT)
        .aggregate(
            points=Count("id"),
            verified=Count("id", filter=Q(storage_lock_checked_at__isnull=False)),
            until=Min("storage_locked_until", filter=Q(storage_lock_checked_at__isnull=False)),
            checked_at=Max("storage_lock_checked_at"),
            problems=Count("id", filter=~Q(storage_lock_problem="")),
        )
    )


def hosts_for_user(user: Any) -> QuerySet[Host]:
    """Every announced host with ``jobs_running`` and ``items`` (protected items read on it,
    whatever their state) annotated: two subqueries, whatever the number of hosts."""
    if not has_capability(user, "view"):
        raise PermissionDenied("Your role does not allow you to see hosts.")
    running = Job.objects.filter(host=OuterRef("name"), status="running")
    items = ProtectedItem.objects.filter(
        source_host=OuterRef("name"), vault__in=vaults_for_user(user)
    )
    count = Func(F("pk"), function="COUNT")
    return Host.objects.annotate(
        jobs_running=Coalesce(
            Subquery(running.order_by().values("host").annotate(n=count).values("n")), 0
        ),
        items=Coalesce(
            Subquery(items.order_by().values("source_host").annotate(n=count).values("n")), 0
        ),
    ).order_by("name")
