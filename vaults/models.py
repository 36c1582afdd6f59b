"""Vaults and their security settings (SPEC 3.1 to 3.3)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Upper

from .hosts import Host  # noqa: F401  # the hosts workers announce (SPEC 3.13)
from .indexes import ITEM_SWEEP_INDEXES, POINT_SWEEP_INDEXES, VAULT_SORT_INDEXES
from .report_sql import next_success_triggers
from .tallies import (
    JOB_TALLY_TRIGGERS,
    LAST_BACKUP_TRIGGERS,
    RPO_TALLY_TRIGGERS,
    VAULT_TALLY_TRIGGERS,
    rpo_due_triggers,
)
from .triggers import ITEM_TRIGGERS, POINT_TRIGGERS, VAULT_TRIGGERS

VAULT_NAME_VALIDATOR = RegexValidator(
    r"^(?!new$)[A-Za-z][A-Za-z0-9-]{1,49}$",
    "A vault name is 2 to 50 letters, digits or hyphens, starting with a letter ('new' is "
    "reserved).",
)


# Vault columns only database triggers write (vaults/triggers.py): never saved from Python.
TRIGGER_KEPT = frozenset(
    {"stored_snapshot_bytes", "stored_standard_bytes", "stored_archive_bytes", "stored_item_count",
     "last_backup_job_id", "last_backup_status", "last_backup_at"}
)  # fmt: skip


class Vault(models.Model):
    class Kind(models.TextChoices):
        RECOVERY_SERVICES = "recovery_services", "Recovery Services vault"
        BACKUP = "backup", "Backup vault"
        ARCHIVE = "archive", "Archive vault"

    class Immutability(models.TextChoices):
        DISABLED = "disabled", "Disabled"
        ENABLED = "enabled", "Enabled"
        LOCKED = "locked", "Enabled and locked"

    class SoftDelete(models.TextChoices):
        DISABLED = "disabled", "Disabled"
        ENABLED = "enabled", "Enabled"
        ALWAYS_ON = "always_on", "Always-on"

    class SecurityLevel(models.TextChoices):
        EXCELLENT = "excellent", "Excellent"
        GOOD = "good", "Good"
        FAIR = "fair", "Fair"
        POOR = "poor", "Poor"

    name = models.CharField(max_length=50, unique=True, validators=[VAULT_NAME_VALIDATOR])
    kind = models.CharField(max_length=20, choices=Kind.choices)
    region = models.CharField(max_length=40)
    tags = models.JSONField(default=dict, blank=True)
    storage_location = models.CharField(max_length=500, blank=True)
    immutability = models.CharField(
        max_length=10, choices=Immutability.choices, default=Immutability.DISABLED
    )
    immutability_changed_at = models.DateTimeField(null=True, blank=True)
    soft_delete_state = models.CharField(
        max_length=10, choices=SoftDelete.choices, default=SoftDelete.ENABLED
    )
    soft_delete_retention_days = models.PositiveSmallIntegerField(
        default=14, validators=[MinValueValidator(14), MaxValueValidator(180)]
    )
    resource_guard = models.ForeignKey(
        "guards.ResourceGuard",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="vaults",
    )
    # Job alerts are recorded, not delivered; security alerts cannot be muted (SPEC 3.8).
    mute_job_alerts = models.BooleanField(default=False)
    # Stored bytes per tier group, kept by triggers on the points (vaults/triggers.py): sorts.
    stored_snapshot_bytes = models.BigIntegerField(default=0, editable=False)
    stored_standard_bytes = models.BigIntegerField(default=0, editable=False)
    stored_archive_bytes = models.BigIntegerField(default=0, editable=False)
    stored_item_count = models.IntegerField(default=0, editable=False)  # the same, for items
    # Where every point is copied (SPEC 3.10): same kind, another region; no chains, no
    # cycles; PostgreSQL keeps a locked vault's pairing in place.
    replica = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replica_source"
    )
    replica_paired_at = models.DateTimeField(null=True, blank=True)
    # The data key wrapped by the master key (SPEC 3.11, vaults/keyring.py); its id is fixed
    # once set (a trigger): a forged wrapped key unwraps to another key and is refused.
    data_key = models.TextField(blank=True, editable=False)
    data_key_id = models.CharField(max_length=32, blank=True, editable=False)
    # Objects from before encryption may remain (read, never written): `keys encrypt-vault`.
    plaintext_objects = models.BooleanField(default=False, editable=False)
    # The newest backup job, kept by triggers (vaults/tallies.py): "Last backup". Display only.
    last_backup_job_id = models.BigIntegerField(null=True, editable=False)
    last_backup_status = models.CharField(  # noqa: DJ001 (NULL: no backup yet, as before)
        max_length=10, null=True, editable=False
    )
    last_backup_at = models.DateTimeField(null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]
        # PostgreSQL's own line of defence (SPEC 8.2): vaults/triggers.py.
        triggers = [*VAULT_TRIGGERS, *VAULT_TALLY_TRIGGERS]
        permissions = [
            ("operate", "Run on-demand backups, restores and rehydration"),
            ("manage", "Create and change vaults, policies, protection and security settings"),
        ]
        indexes = [
            models.Index(fields=["kind", "region"], name="vault_kind_region_idx"),
            *VAULT_SORT_INDEXES,  # the portfolio's sorts (vaults/indexes.py)
            # The region filter (iexact) with the page's order; the tag filter's GIN index on
            # PostgreSQL is in migration 0011.
            models.Index(Upper("region"), "name", name="vault_region_name_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(soft_delete_retention_days__gte=14)
                & models.Q(soft_delete_retention_days__lte=180),
                name="vault_soft_delete_retention_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """A full save of a loaded vault leaves the trigger-kept totals alone: this instance's
        copy may be older than a backup that finished since it was read."""
        if not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and f.name not in TRIGGER_KEPT
            ]
        super().save(*args, **kwargs)

    @property
    def is_immutable(self) -> bool:
        return self.immutability in {self.Immutability.ENABLED, self.Immutability.LOCKED}

    @property
    def is_locked(self) -> bool:
        return self.immutability == self.Immutability.LOCKED

    @property
    def soft_delete_on(self) -> bool:
        return self.soft_delete_state != self.SoftDelete.DISABLED

    @property
    def data_lock(self) -> str:
        """The data-lock column of every vault list: "Locked" for locked vaults."""
        return "Locked" if self.is_locked else ""

    @property
    def security_level(self) -> str:
        if (
            self.is_locked
            and self.soft_delete_state == self.SoftDelete.ALWAYS_ON
            and self.resource_guard_id is not None
        ):
            return self.SecurityLevel.EXCELLENT
        if self.is_immutable and self.soft_delete_on:
            return self.SecurityLevel.GOOD
        if self.soft_delete_on:
            return self.SecurityLevel.FAIR
        return self.SecurityLevel.POOR

    def unexpired_point_count(self, now: datetime) -> int:
        """Vault- and archive-tier points whose expiry lies in the future (SPEC 3.2)."""
        return self.recovery_points.unexpired(now).count()

    def audit_state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "region": self.region,
            "immutability": self.immutability,
            "soft_delete": {
                "state": self.soft_delete_state,
                "retention_days": self.soft_delete_retention_days,
            },
            "resource_guard": self.resource_guard.name if self.resource_guard else None,
            "mute_job_alerts": self.mute_job_alerts,
            "replica": self.replica.name if self.replica_id and self.replica else None,
        }

    @property
    def replica_of(self) -> Vault | None:
        """The vault this one is the replica of, if any."""
        try:
            return self.replica_source
        except Vault.DoesNotExist:
            return None


class ProtectedItem(models.Model):
    """A data source on a policy (SPEC 3.7)."""

    class SourceKind(models.TextChoices):
        DIRECTORY = "directory", "Directory"
        POSTGRES = "postgres", "PostgreSQL database"  # source_path holds the database's name
        # A source vault's item copied (SPEC 3.10); source_path: that vault. Never backed up.
        REPLICA = "replica", "Replica"

    class State(models.TextChoices):
        PROTECTED = "protected", "Protected"
        PROTECTION_STOPPED = "protection_stopped", "Protection stopped (data retained)"
        SOFT_DELETED = "soft_deleted", "Soft-deleted"

    vault = models.ForeignKey(Vault, on_delete=models.CASCADE, related_name="items")
    name = models.CharField(max_length=100)
    source_kind = models.CharField(max_length=20, choices=SourceKind.choices, default="directory")
    source_path = models.CharField(max_length=1000)
    source_host = models.CharField(max_length=100, blank=True)  # "" is any host (SPEC 3.13)
    policy = models.ForeignKey("policies.Policy", on_delete=models.RESTRICT, related_name="items")
    protection_state = models.CharField(
        max_length=20, choices=State.choices, default=State.PROTECTED
    )
    stopped_at = models.DateTimeField(null=True, blank=True)
    soft_deleted_at = models.DateTimeField(null=True, blank=True)
    purge_at = models.DateTimeField(null=True, blank=True)
    last_backup_at = models.DateTimeField(null=True, blank=True)
    # last_backup_at plus the policy's RPO window and grace, set by a trigger from the policy
    # (vaults/tallies.py); NULL when never backed up. Display only: the tiles' RPO counts.
    rpo_due_at = models.DateTimeField(null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["vault", "name"]
        constraints = [
            models.UniqueConstraint(fields=["vault", "name"], name="item_unique_name_per_vault"),
        ]
        triggers = [*ITEM_TRIGGERS, *rpo_due_triggers(), *RPO_TALLY_TRIGGERS]
        indexes = [
            models.Index(fields=["policy", "protection_state"], name="item_policy_idx"),
            models.Index(
                fields=["rpo_due_at"], name="item_rpo_due_idx",
                condition=models.Q(protection_state="protected"),
            ),
            *ITEM_SWEEP_INDEXES,  # the soft-delete sweep's (vaults/indexes.py)
        ]  # fmt: skip

    def __str__(self) -> str:
        return self.name

    def unexpired_point_count(self, now: datetime) -> int:
        return self.recovery_points.unexpired(now).count()

    def audit_state(self) -> dict[str, Any]:
        return {
            "item": self.name,
            "policy": self.policy.name,
            "protection_state": self.protection_state,
            "source": {"kind": self.source_kind, "path": self.source_path},
            "source_host": self.source_host,
            "purge_at": self.purge_at.isoformat() if self.purge_at else None,
        }


class RecoveryPointQuerySet(models.QuerySet["RecoveryPoint"]):
    def unexpired(self, now: datetime) -> RecoveryPointQuerySet:
        """Vault- and archive-tier points whose expiry lies ahead: what immutability covers
        (operational snapshots are not, SPEC 3.2)."""
        return self.filter(expires_at__gt=now).exclude(tier="snapshot")

    def soft_deleted(self, now: datetime) -> RecoveryPointQuerySet:
        """Points past their expiry that soft delete still keeps, restorable (SPEC 3.3)."""
        return self.filter(expires_at__lte=now, soft_deleted_until__gt=now)


class RecoveryPoint(models.Model):
    """One backup's recovery point; immutability protects it until ``expires_at``."""

    class Tier(models.TextChoices):
        SNAPSHOT = "snapshot", "Snapshot (operational)"
        SNAPSHOT_AND_VAULT = "snapshot_and_vault", "Snapshot and vault-standard"
        VAULT_STANDARD = "vault_standard", "Vault-standard"
        VAULT_ARCHIVE = "vault_archive", "Vault-archive"

    vault = models.ForeignKey(Vault, on_delete=models.CASCADE, related_name="recovery_points")
    item = models.ForeignKey(
        ProtectedItem, on_delete=models.CASCADE, related_name="recovery_points"
    )
    tier = models.CharField(max_length=20, choices=Tier.choices, default=Tier.VAULT_STANDARD)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    tags = models.JSONField(default=list, blank=True)
    on_demand = models.BooleanField(default=False)
    logical_bytes = models.BigIntegerField(default=0)
    stored_bytes = models.BigIntegerField(default=0)
    digest = models.CharField(max_length=128, blank=True)
    # Its id in the vault's store: the row exists only once the store's manifest does.
    storage_key = models.CharField(max_length=128, blank=True)
    # When the instant-restore copy of a snapshot_and_vault point lapses (SPEC 3.7).
    snapshot_expires_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    rehydrated_until = models.DateTimeField(null=True, blank=True)  # restorable until then
    # Set when a retention reduction expired the point at once while soft delete was on
    # (SPEC 3.3): the expiry sweep keeps it until then; raising the retention clears it.
    soft_deleted_until = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    corrupted_at = models.DateTimeField(null=True, blank=True)
    corruption = models.TextField(blank=True)
    # S3 Object Lock as the storage itself confirmed it (the lock_verify job): the earliest
    # retain-until date over the point's objects, the weakest mode, and when it was read.
    storage_locked_until = models.DateTimeField(null=True, blank=True)
    storage_lock_mode = models.CharField(max_length=12, blank=True)
    storage_lock_checked_at = models.DateTimeField(null=True, blank=True)
    storage_lock_problem = models.TextField(blank=True)
    # The last restore drill (SPEC 3.12): {status, at, files, bytes, seconds[, error, first_bad]}.
    drill = models.JSONField(null=True, blank=True)
    workload = models.JSONField(null=True, blank=True)  # a database dump's facts (workloads/)
    # A replica point's source (SPEC 3.10): the source vault's name and its id there; plain
    # values, not keys: deleting or expiring the source point never touches the copy.
    source_vault = models.CharField(max_length=50, blank=True)
    source_point_ref = models.BigIntegerField(null=True, blank=True)

    objects = RecoveryPointQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["vault", "expires_at"], name="point_vault_expiry_idx"),
            models.Index(fields=["expires_at", "id"], name="point_expiry_idx"),  # the sweep
            *POINT_SWEEP_INDEXES,  # the tier sweeps' pages (vaults/indexes.py)
            models.Index(fields=["item", "-created_at"], name="point_item_created_idx"),
            models.Index(fields=["created_at"], include=["vault", "item", "tier", "stored_bytes"],
                         name="point_growth_idx"),  # the report's growth, from the index alone
            models.Index(fields=["item"], include=["drill"], name="point_item_drill_idx",
                         condition=models.Q(drill__isnull=False)),  # the report's last drill
        ]  # fmt: skip
        constraints = [
            # One copy per source point in a vault: a copy job run twice records one point.
            models.UniqueConstraint(
                fields=["vault", "source_vault", "source_point_ref"],
                condition=models.Q(source_point_ref__isnull=False),
                name="point_one_copy_per_source",
            ),
        ]
        triggers = POINT_TRIGGERS

    def __str__(self) -> str:
        return f"{self.item.name}@{self.created_at:%Y-%m-%d %H:%M}"

    @property
    def is_operational_only(self) -> bool:
        return self.tier == self.Tier.SNAPSHOT

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at <= now

    def is_soft_deleted(self, now: datetime) -> bool:
        """Kept by soft delete until ``soft_deleted_until`` once its (shortened) expiry passes:
        the sweep does not purge it before then."""
        return self.soft_deleted_until is not None and self.soft_deleted_until > now

    def soft_delete_kept(self, expires_at: datetime) -> datetime | None:
        """The soft-delete end this point keeps when its expiry becomes ``expires_at``: the
        one it has, if that is later. A soft delete, once given, never ends sooner: a point
        brought back with a date just ahead (a later retain-until, a retention increase, both
        open to one backup admin) would otherwise lose its period and be purged at that date."""
        current = self.soft_deleted_until
        return current if current is not None and current > expires_at else None

    def state(self, now: datetime) -> str:
        """``soft_deleted`` while past its expiry but kept by soft delete, else ``active``."""
        return "soft_deleted" if self.is_expired(now) and self.is_soft_deleted(now) else "active"

    @property
    def is_archived(self) -> bool:
        return self.tier == self.Tier.VAULT_ARCHIVE

    def is_rehydrated(self, now: datetime) -> bool:
        """An archived point whose standard-tier copy is restorable now."""
        return self.rehydrated_until is not None and self.rehydrated_until > now

    def is_protected(self, now: datetime) -> bool:
        """Immutability covers every vault- and archive-tier point until its expiry."""
        return self.vault.is_immutable and not self.is_operational_only and not self.is_expired(now)

    def audit_state(self) -> dict[str, Any]:
        return {
            "point": self.pk,
            "item": self.item.name,
            "tier": self.tier,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "soft_deleted_until": (
                self.soft_deleted_until.isoformat() if self.soft_deleted_until else None
            ),
        }


class Job(models.Model):
    """Every backup, restore, tier move, rehydration, verification and sweep (SPEC 3.8).

    Job state lives here, not in Celery: a worker claims a queued job with a compare-and-set,
    and a scheduled backup's or drill's (item, slot) is unique so it runs at most once.
    """

    class Kind(models.TextChoices):
        BACKUP = "backup", "Backup"
        RESTORE = "restore", "Restore"
        VERIFY = "verify", "Verify"
        TIER_MOVE = "tier_move", "Tier move"
        REHYDRATE = "rehydrate", "Rehydrate"
        SWEEP = "sweep", "Sweep"
        # S3 Object Lock: set retention on existing objects; read it back per point.
        STORAGE_LOCK = "storage_lock", "Storage lock"
        LOCK_VERIFY = "lock_verify", "Storage lock verification"
        COPY = "copy", "Copy to replica"  # to the vault's replica (SPEC 3.10)
        DRILL = "drill", "Restore drill"  # restored to scratch and re-hashed (SPEC 3.12)

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=12, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    vault = models.ForeignKey(
        Vault, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    item = models.ForeignKey(
        ProtectedItem, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    recovery_point = models.ForeignKey(
        RecoveryPoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    slot = models.DateTimeField(null=True, blank=True, help_text="Scheduled backup slot (UTC)")
    params = models.JSONField(default=dict, blank=True)
    bytes_done = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(default=0)
    files_done = models.IntegerField(default=0)  # files and folders taken so far (0 of 0:
    files_total = models.IntegerField(default=0)  # while the tree is being counted)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    next_success_at = models.DateTimeField(null=True, editable=False)  # kept by triggers
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    # Which worker ran it ("host:pid", or HOLDFAST_WORKER_NAME): workers may run on many hosts.
    worker = models.CharField(max_length=255, blank=True)
    host = models.CharField(max_length=100, blank=True)  # only its workers run it ("": any)
    waiting_for_host = ""  # not a column: "waiting for host ..." (vaults.hosts.job_waits)
    route_known = False  # not a column: built with its item's host, routing reads no item
    # Asked to stop (job_cancel): a queued job ends at once; a running one at its next file or
    # chunk boundary, as failed with the canceller named in its error (no "cancelled" status).
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["item", "slot"], name=f"job_one_{kind}_per_item_slot",
                                    condition=models.Q(kind=kind, slot__isnull=False))
            for kind in ("backup", "drill")
        ]  # fmt: skip
        indexes = [
            models.Index(fields=["status", "kind"], name="job_status_kind_idx"),
            models.Index(fields=["vault", "-created_at"], name="job_vault_created_idx"),
            models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat_idx"),
            models.Index(fields=["created_at", "status"], name="job_created_status_idx"),
            models.Index(
                "vault", models.F("created_at").desc(), models.F("id").desc(),
                name="job_vault_backup_idx", condition=models.Q(kind="backup"),
            ),
            models.Index("item", models.F("ended_at").desc(), name="job_item_drill_passed_idx",
                         condition=models.Q(kind="drill", status="completed")),  # drill overdue
            models.Index(fields=["item", "status", "ended_at"], include=["next_success_at"],
                         name="job_item_backup_next_idx", condition=models.Q(kind="backup")),
        ]  # fmt: skip
        triggers = [*LAST_BACKUP_TRIGGERS, *JOB_TALLY_TRIGGERS, *next_success_triggers()]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.COMPLETED, self.Status.FAILED}

    @property
    def cancellable(self) -> bool:
        """A person may stop this kind of job (vaults.jobs.requests.CANCELLABLE)."""
        return self.kind in {self.Kind.BACKUP, self.Kind.RESTORE, self.Kind.REHYDRATE}

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None:
            return None
        return (self.ended_at or self.heartbeat_at or self.started_at) - self.started_at

    @property
    def percent(self) -> int:
        if self.bytes_total <= 0:
            return 100 if self.status == self.Status.COMPLETED else 0
        return min(100, int(100 * self.bytes_done / self.bytes_total))

    @property
    def was_cancelled(self) -> bool:
        return self.status == self.Status.FAILED and self.cancel_requested_at is not None

    @property
    def display_state(self) -> str:
        """The state a person reads: SPEC 5's status, or ``cancelled``/``cancelling``."""
        if self.was_cancelled:
            return "cancelled"
        if self.status == self.Status.RUNNING and self.cancel_requested_at is not None:
            return "cancelling"
        return str(self.status)

    @property
    def throughput(self) -> float | None:
        """Bytes per second so far, from the last heartbeat; None before there is any."""
        duration = self.duration
        if duration is None or self.bytes_done <= 0 or duration.total_seconds() <= 0:
            return None
        return self.bytes_done / duration.total_seconds()

    @property
    def time_left(self) -> timedelta | None:
        """At the throughput so far; None until the total and a throughput are known."""
        rate = self.throughput
        if self.is_finished or rate is None or self.bytes_total <= self.bytes_done:
            return None
        return timedelta(seconds=round((self.bytes_total - self.bytes_done) / rate))


class JobTally(models.Model):
    """Jobs per ten minutes of creation and status, kept by triggers on the jobs
    (vaults/tallies.py) for the Backup center's jobs tile. Display only."""

    bucket = models.DateTimeField()
    status = models.CharField(max_length=10)
    n = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["bucket", "status"], name="job_tally_bucket_status")
        ]

    def __str__(self) -> str:
        return f"{self.bucket:%Y-%m-%d %H:%M} {self.status}: {self.n}"


class RpoTally(models.Model):
    """Protected items per ten minutes of RPO deadline (NULL: never backed up), kept by
    triggers on the items (vaults/tallies.py) for the protected items tile. Display only."""

    bucket = models.DateTimeField(null=True)
    n = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bucket"], name="rpo_tally_bucket",
                                               nulls_distinct=False)]  # fmt: skip

    def __str__(self) -> str:
        return f"{self.bucket or 'never backed up'}: {self.n}"


class VaultTally(models.Model):
    """Vaults per (immutability, soft delete, guarded), kept by triggers on the vaults
    (vaults/tallies.py) for the security level and settings tiles. Display only."""

    immutability = models.CharField(max_length=10)
    soft_delete_state = models.CharField(max_length=10)
    guarded = models.BooleanField()
    n = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["immutability", "soft_delete_state",
                       "guarded"], name="vault_tally_key")]  # fmt: skip

    def __str__(self) -> str:
        return f"{self.immutability}/{self.soft_delete_state}/{self.guarded}: {self.n}"
