"""A vault with a protected directory and a real recovery point (a backup run eagerly by
the runner on the real store), shared by the restore, download, item page and cancel tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from policies import services as policy_services
from tests.factories import make_vault
from vaults import services as vault_services
from vaults.jobs import requests, runner
from vaults.models import ProtectedItem, RecoveryPoint


@pytest.fixture(name="stores")
def stores_fixture(settings: Any, tmp_path: Path) -> dict[str, Path]:
    settings.HOLDFAST_STORAGE_ROOT = tmp_path / "storage"
    restores = tmp_path / "restores"
    other = tmp_path / "restores-two"
    restores.mkdir()
    other.mkdir()
    settings.HOLDFAST_RESTORE_ROOTS = [restores, other]
    source = tmp_path / "data" / "docs"
    (source / "reports").mkdir(parents=True)
    (source / "notes.txt").write_text("first notes\n")
    (source / "budget.csv").write_bytes(b"year,amount\n2026,42\n" * 50)
    (source / "reports" / "q1.txt").write_text("quarter one\n")
    (source / "reports" / "q2.txt").write_text("quarter two\n" * 100)
    return {"storage": tmp_path / "storage", "restores": restores, "other": other, "source": source}


def protect(admin: Any, source: Path, vault_name: str = "vault-one", **vault: Any) -> ProtectedItem:
    made = make_vault(admin, name=vault_name, **vault)
    policy = policy_services.policy_create(actor=admin, vault=made, name="daily", daily_days=30)
    return vault_services.item_protect(
        actor=admin, vault=made, name="docs", source_path=str(source), policy=policy
    )


def backed_up(admin: Any, item: ProtectedItem) -> RecoveryPoint:
    job = runner.job_run(job_id=requests.backup_request(actor=admin, item=item).pk)
    assert job is not None and job.status == "completed", job and job.error
    assert job.recovery_point is not None
    return job.recovery_point


@pytest.fixture(name="point")
def point_fixture(admin: Any, stores: dict[str, Path]) -> RecoveryPoint:
    return backed_up(admin, protect(admin, stores["source"]))
