"""The living part of the demo data (``manage.py seed_demo``): protected directories with real
backups, a failed job and its alert, a guarded vault, pending requests.

Everything goes through the services as the demo users (alice, a backup admin; sam and
sofia, security admins) or through the job runner in this process, as a worker would run it:
the points are real points in the vaults' stores, the audit chain records every step. Each
step first looks whether its result exists, so running it again adds nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from django.contrib.auth import get_user_model

from guards import services as guard_services
from guards.models import ResourceGuard
from policies import rules as policy_rules
from policies import services as policy_services
from policies.models import Policy
from portal import clock
from portal import services as portal_services
from portal.models import Approval

from . import services
from .jobs import requests, runner, schedules
from .jobs.state import new_job
from .models import Job, ProtectedItem, RecoveryPoint, Vault
from .rules import demo_dir


class DemoItem(NamedTuple):
    vault: str
    name: str
    directory: str  # under var/demo/
    files: dict[str, str]
    policy: str = "demo-daily"


DEMO_ITEMS: list[DemoItem] = [
    DemoItem(
        "prod-files-weu",
        "finance-reports",
        "finance-reports",
        {
            "2026-q3/summary.csv": "quarter,revenue,costs\nQ3,1204500,998210\n",
            "2026-q3/notes.md": "# Q3 close\nAll ledgers reconciled on the 4th.\n",
            "README.txt": "Quarterly finance reports, exported nightly.\n",
        },
    ),
    DemoItem(
        "prod-files-weu",
        "web-site",
        "web-site",
        {
            "index.html": "<!doctype html><title>Holdfast demo</title><h1>Hello</h1>\n",
            "css/site.css": "body { font-family: sans-serif; }\n",
            "robots.txt": "User-agent: *\nDisallow:\n",
        },
        "demo-hourly",
    ),
    DemoItem(
        "prod-sql-weu",
        "sql-dumps",
        "sql-dumps",
        {
            "orders.sql": "CREATE TABLE orders (id int primary key, total numeric);\n" * 40,
            "customers.sql": "CREATE TABLE customers (id int primary key, name text);\n" * 40,
        },
    ),
    DemoItem(
        "stage-pg-neu",
        "hr-records",
        "hr-records",
        {
            "staff.csv": "id,name,team\n1,Ada,platform\n2,Grace,security\n",
            "policies/leave.md": "Leave policy: 25 days a year.\n",
        },
    ),
]
# An item whose directory is gone after it was protected: its backup fails, with its alert.
FAILING_ITEM = ("dev-vm-eus", "legacy-share", "legacy-share")
GUARD = "demo-guard"
GUARDED_VAULT = "prod-sql-weu"  # locked too: the vault the demo shows at its strongest
WEAK_VAULT = "dev-blobs-sea"  # a dev vault with nothing to keep: soft delete off
LOCK_REQUEST_VAULT = "prod-files-weu"  # immutable, not locked: a lock waits for approval


def _user(username: str) -> Any:
    return get_user_model().objects.get(username=username)


def _write_files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(text)


POLICIES: dict[str, dict[str, Any]] = {
    "demo-daily": {"daily_days": 30, "weekly_weeks": 12, "monthly_months": 12},
    # Enhanced: a run every 4 hours; the runs before the day's last are operational snapshots.
    "demo-hourly": {"kind": "enhanced", "frequency": "hourly", "interval_hours": 4,
                    "window_start": dt.time(0, 0), "window_hours": 24, "daily_days": 30,
                    "instant_restore_days": 7},
}  # fmt: skip


def _policy(alice: Any, vault: Vault, name: str) -> Policy:
    policy = Policy.objects.filter(vault=vault, name=name).first()
    if policy is None:
        policy = policy_services.policy_create(
            actor=alice, vault=vault, name=name, **POLICIES[name]
        )
    return policy


def _protect(
    alice: Any, vault_name: str, name: str, directory: Path, policy: str = "demo-daily"
) -> ProtectedItem:
    vault = Vault.objects.get(name=vault_name)
    item = ProtectedItem.objects.filter(vault=vault, name=name).first()
    if item is None:
        item = services.item_protect(
            actor=alice, vault=vault, name=name, source_path=str(directory),
            policy=_policy(alice, vault, policy),
        )  # fmt: skip
    return item


def _run(job: Job) -> Job:
    """Run a queued job here and now, as a worker would (a worker that gets its message
    later finds it claimed and leaves it)."""
    runner.job_run(job_id=job.pk)
    job.refresh_from_db()
    return job


def _backups(alice: Any, item: ProtectedItem, root: Path) -> Iterator[str]:
    if item.recovery_points.exists():
        return
    first = _run(requests.backup_request(actor=alice, item=item))
    # A change between the two runs, so the second point differs (and shares the rest).
    (root / "CHANGES.txt").write_text(f"Edited after the first backup of {item.name}.\n")
    second = _run(requests.backup_request(actor=alice, item=item))
    where = f"{item.vault.name}/{item.name}"
    yield f"  {where}: backups #{first.pk} {first.status}, #{second.pk} {second.status}"


def _snapshot_run(item: ProtectedItem) -> Iterator[str]:
    """One scheduled run of an enhanced policy that is not the day's last: an operational
    snapshot (SPEC 3.6), dispatched as beat would for that slot and run here."""
    if item.recovery_points.filter(tier=RecoveryPoint.Tier.SNAPSHOT).exists():
        return
    now = clock.now()
    schedule = item.policy.schedule()
    slots = [
        slot
        for slot in policy_rules.scheduled_slots(schedule, now - dt.timedelta(days=1), now)
        if not policy_rules.is_vault_tier_run(schedule, slot)
    ]
    if not slots:
        return
    for job in schedules.backups_dispatch(now=slots[-1]):
        job = _run(job)
        where = f"{job.vault.name}/{job.item.name}" if job.vault and job.item else "?"
        yield f"  {where}: scheduled backup #{job.pk} {job.status}"


def _archive_one(item: ProtectedItem) -> Iterator[str]:
    """Move the item's oldest point to the archive tier through a tier-move job (what the
    tiering schedule queues for eligible points), so the dashboard shows every tier group."""
    if item.recovery_points.filter(tier=RecoveryPoint.Tier.VAULT_ARCHIVE).exists():
        return
    point = item.recovery_points.order_by("created_at", "id").first()
    if point is None:
        return
    job = new_job(
        Job.Kind.TIER_MOVE, now=clock.now(), vault=item.vault, item=item, recovery_point=point
    )
    job = _run(job)
    yield f"  {item.vault.name}/{item.name}: point {point.pk} to the archive tier: {job.status}"


def _failed_backup(alice: Any, root: Path) -> Iterator[str]:
    vault_name, name, directory = FAILING_ITEM
    if ProtectedItem.objects.filter(vault__name=vault_name, name=name).exists():
        return
    source = root / directory
    _write_files(source, {"old.txt": "Files of a share since retired.\n"})
    item = _protect(alice, vault_name, name, source)
    for path in sorted(source.rglob("*"), reverse=True):  # the share is retired, unannounced
        path.rmdir() if path.is_dir() else path.unlink()
    source.rmdir()
    job = _run(requests.backup_request(actor=alice, item=item))
    yield f"  {vault_name}/{name}: backup #{job.pk} {job.status} (its directory is gone)"


def _security_spread(alice: Any, sam: Any) -> Iterator[str]:
    """Every security level on the portfolio: the guarded SQL vault gets always-on soft
    delete (approved by sam: excellent once guarded), a dev vault none (poor)."""
    strong = Vault.objects.get(name=GUARDED_VAULT)
    if strong.soft_delete_state != Vault.SoftDelete.ALWAYS_ON:
        approval = services.soft_delete_always_on_request(
            actor=alice, vault=strong, confirmation=strong.name
        )
        portal_services.approval_approve(actor=sam, approval=approval)
        yield f"  {strong.name}: soft delete always-on"
    weak = Vault.objects.get(name=WEAK_VAULT)
    if weak.soft_delete_state == Vault.SoftDelete.ENABLED and not weak.items.exists():
        services.soft_delete_set(
            actor=alice, vault=weak, state=Vault.SoftDelete.DISABLED, confirm_purge_count=0
        )
        yield f"  {weak.name}: soft delete off"


def _guard(sam: Any, alice: Any) -> Iterator[str]:
    guard = ResourceGuard.objects.filter(name=GUARD).first()
    if guard is None:
        guard = guard_services.guard_create(
            actor=sam, name=GUARD,
            description="Guards the production SQL vault: deleting points or weakening "
                        "its security needs an approved elevation.",
        )  # fmt: skip
        yield f"  resource guard {GUARD}"
    vault = Vault.objects.get(name=GUARDED_VAULT)
    if vault.resource_guard_id is None:
        services.vault_guard_set(actor=alice, vault=vault, guard=guard)
        yield f"  {GUARDED_VAULT} guarded by {GUARD}"


def _pending_requests(alice: Any) -> Iterator[str]:
    now = clock.now()
    vault = Vault.objects.get(name=LOCK_REQUEST_VAULT)
    pending = Approval.objects.pending(now)
    if (
        vault.immutability == Vault.Immutability.ENABLED
        and not pending.filter(kind=Approval.Kind.LOCK_IMMUTABILITY, vault=vault).exists()
    ):
        services.immutability_lock_request(actor=alice, vault=vault, confirmation=vault.name)
        yield f"  lock request for {vault.name}, waiting for a security admin"
    guard = ResourceGuard.objects.get(name=GUARD)
    if not pending.filter(kind=Approval.Kind.ELEVATION, guard=guard).exists():
        guard_services.elevation_request(
            actor=alice, guard=guard, duration_minutes=60,
            justification="Delete last week's test dump from sql-dumps (ticket OPS-1423).",
        )  # fmt: skip
        yield f"  elevation request on {GUARD}, waiting for a security admin"


def seed_living_demo() -> Iterator[str]:
    """Create what is missing; yield a line per thing done."""
    alice, sam = _user("alice"), _user("sam")
    root = demo_dir()
    root.mkdir(parents=True, exist_ok=True)
    for demo in DEMO_ITEMS:
        source = root / demo.directory
        _write_files(source, demo.files)
        item = _protect(alice, demo.vault, demo.name, source, demo.policy)
        yield from _backups(alice, item, source)
    web = ProtectedItem.objects.get(vault__name="prod-files-weu", name="web-site")
    yield from _snapshot_run(web)
    yield from _archive_one(
        ProtectedItem.objects.get(vault__name="prod-files-weu", name="finance-reports")
    )
    yield from _failed_backup(alice, root)
    yield from _security_spread(alice, sam)
    yield from _guard(sam, alice)
    yield from _pending_requests(alice)
