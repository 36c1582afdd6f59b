"""``manage.py seed_demo`` (what ``make run`` loads): a living system on the first sign-in.

On the test PostgreSQL, run twice: nothing is duplicated, every main page answers 200 for
each demo user with real rows on it, and the audit chain verifies. The one exception it
needs from the backup source rule (``var/demo/`` may be protected, the rest of ``var/`` not)
is attacked here too.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from guards.models import ResourceGuard
from portal.gate import DomainError
from portal.models import Alert, Approval, AuditRecord
from tests.factories import make_vault
from vaults import services as vault_services
from vaults.models import Job, ProtectedItem, RecoveryPoint, Vault
from vaults.rules import source_refusal

DEMO_USERS = ["admin", "alice", "sam", "sofia", "oscar", "rita"]


@pytest.fixture
def demo_settings(settings: Any, tmp_path: Path) -> Path:
    settings.VAR_DIR = tmp_path / "var"
    settings.HOLDFAST_STORAGE_ROOT = tmp_path / "var" / "storage"
    settings.HOLDFAST_RESTORE_ROOTS = [tmp_path / "var" / "restores"]
    settings.VAR_DIR.mkdir()
    return settings.VAR_DIR


def _counts() -> dict[str, int]:
    return {
        "vaults": Vault.objects.count(),
        "items": ProtectedItem.objects.count(),
        "points": RecoveryPoint.objects.count(),
        "jobs": Job.objects.count(),
        "alerts": Alert.objects.count(),
        "approvals": Approval.objects.count(),
        "guards": ResourceGuard.objects.count(),
    }


@pytest.fixture
def demo(db: None, demo_settings: Path) -> dict[str, int]:
    call_command("seed_demo", stdout=io.StringIO())
    return _counts()


def test_the_demo_is_alive(demo: dict[str, int], demo_settings: Path) -> None:
    assert sorted((demo_settings / "demo").iterdir())  # real directories with real files
    assert (demo_settings / "demo" / "finance-reports" / "README.txt").is_file()
    items = ProtectedItem.objects.exclude(name="legacy-share")
    assert items.count() == 4
    for item in items:
        assert item.last_backup_at is not None
        assert item.recovery_points.count() == (3 if item.name == "web-site" else 2)
        assert item.source_path.startswith(str(demo_settings / "demo"))
    tiers = set(RecoveryPoint.objects.values_list("tier", flat=True))
    assert tiers == {"snapshot", "snapshot_and_vault", "vault_archive"}  # every tier group
    assert all(p.storage_key and p.stored_bytes > 0 for p in RecoveryPoint.objects.all())
    failed = Job.objects.get(status="failed")
    assert failed.item.name == "legacy-share" and failed.kind == "backup"
    assert Alert.objects.filter(kind="backup_failed", status="open", vault_name="dev-vm-eus")
    guarded = Vault.objects.get(name="prod-sql-weu")
    assert guarded.is_locked and guarded.resource_guard.name == "demo-guard"
    levels = {vault.security_level for vault in Vault.objects.all()}
    assert levels == {"excellent", "good", "fair", "poor"}  # every level on the portfolio
    pending = Approval.objects.filter(status="pending")
    assert set(pending.values_list("kind", flat=True)) == {"lock_immutability", "elevation"}
    # The totals the portfolio sorts on agree with the points (kept by the triggers).
    vault = Vault.objects.get(name="prod-files-weu")
    standard = sum(p.stored_bytes for p in vault.recovery_points.filter(tier="snapshot_and_vault"))
    archive = sum(p.stored_bytes for p in vault.recovery_points.filter(tier="vault_archive"))
    snapshot = sum(p.stored_bytes for p in vault.recovery_points.filter(tier="snapshot"))
    assert (vault.stored_standard_bytes, vault.stored_archive_bytes) == (standard, archive)
    assert vault.stored_snapshot_bytes == snapshot > 0


def test_running_it_again_adds_nothing_and_fails_nothing(demo: dict[str, int]) -> None:
    records = AuditRecord.objects.count()
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    assert _counts() == demo
    assert AuditRecord.objects.count() == records
    assert "Demo data ready" in out.getvalue()


def test_the_audit_chain_verifies_after_the_demo(demo: dict[str, int]) -> None:
    call_command("seed_demo", stdout=io.StringIO())
    out = io.StringIO()
    call_command("audit_verify", stdout=out, stderr=io.StringIO())
    assert "Audit chain intact" in out.getvalue()


# page, what must be on it (for every demo user)
PAGES = [
    ("/", "prod-sql-weu"),
    ("/backup-center/?sort=-storage", "prod-files-weu"),
    ("/backup-center/tiles/", "Pending approvals"),
    ("/items/", "finance-reports"),
    ("/items/?rpo=met", "sql-dumps"),
    ("/dashboard/", "Storage by tier"),
    ("/jobs/", "legacy-share"),
    ("/jobs/?status=failed&since=24h", "legacy-share"),
    ("/alerts/", "dev-vm-eus"),
    ("/approvals/", "prod-files-weu"),
    ("/resource-guards/", "demo-guard"),
    ("/audit/", "item_protect"),
    ("/vaults/", "finance-archive"),
    ("/vaults/prod-sql-weu/", "prod-sql-weu"),
    ("/vaults/prod-files-weu/items/", "finance-reports"),
]


@pytest.mark.parametrize("username", DEMO_USERS)
def test_every_main_page_shows_real_rows_to_every_demo_user(
    demo: dict[str, int], client: Client, username: str
) -> None:
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username=username))
    for path, text in PAGES:
        response = client.get(path)
        assert response.status_code == 200, (username, path)
        assert text in response.content.decode(), (username, path, text)
    tiles = {t.key: t for t in client.get("/backup-center/tiles/").context["tiles"]}
    assert tiles["jobs"].total and tiles["items"].total == 5  # legacy-share: RPO missed
    assert tiles["approvals"].total == 2 and tiles["alerts"].total >= 1
    figures = client.get("/dashboard/").context["figures"]
    assert figures["storage_total"] > 0 and figures["rpo_protected"] == 5
    assert figures["jobs_total"] >= 9


# --- the source rule's one exception, attacked --------------------------------------------


def test_only_directories_below_var_demo_may_be_protected(demo_settings: Path) -> None:
    var = demo_settings.resolve()
    (var / "demo" / "ok").mkdir(parents=True)
    (var / "storage").mkdir()
    assert source_refusal(var / "demo" / "ok") is None
    for refused in [var, var / "demo", var / "storage", var / "restores"]:
        assert source_refusal(refused.resolve()) is not None, refused
    # ../ is resolved before the rule sees it: var/demo/../storage is var/storage.
    assert source_refusal((var / "demo" / ".." / "storage").resolve()) is not None


def test_a_var_demo_symlinked_to_var_opens_nothing(demo_settings: Path) -> None:
    var = demo_settings.resolve()
    (var / "elsewhere").mkdir()
    os.symlink(var, var / "demo")  # var/demo -> var: var/demo/elsewhere is var/elsewhere
    assert source_refusal((var / "demo" / "elsewhere").resolve()) is not None
    assert source_refusal(var / "demo" / "elsewhere") is not None  # even unresolved


def test_a_symlink_inside_var_demo_to_the_store_is_refused(admin: Any, demo_settings: Path) -> None:
    from policies import services as policy_services

    var = demo_settings.resolve()
    (var / "storage").mkdir()
    (var / "demo").mkdir()
    os.symlink(var / "storage", var / "demo" / "sneaky")
    vault = make_vault(admin, name="sneaky-vault")
    policy = policy_services.policy_create(actor=admin, vault=vault, name="p", daily_days=30)
    with pytest.raises(DomainError, match="own storage or data"):
        vault_services.item_protect(
            actor=admin, vault=vault, name="sneaky", source_path=str(var / "demo" / "sneaky"),
            policy=policy,
        )  # fmt: skip
    assert not ProtectedItem.objects.filter(name="sneaky").exists()


def test_without_var_demo_among_the_source_roots_the_demo_says_so(
    db: None, demo_settings: Path, settings: Any, tmp_path: Path
) -> None:
    settings.HOLDFAST_SOURCE_ROOTS = [tmp_path / "elsewhere"]
    err = io.StringIO()
    call_command("seed_demo", stdout=io.StringIO(), stderr=err)
    assert "not all made" in err.getvalue() and "outside the directories" in err.getvalue()
    assert Vault.objects.count() == 12 and not ProtectedItem.objects.exists()
