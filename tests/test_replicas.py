"""Replica vaults (SPEC 3.10): pairing, copies on a real Celery worker, restores from the
replica, the lock rules that follow, and the 1%-change copy that moves only changed chunks.

The worker runs in this process on a queue of its own (tests/test_jobs.py's ``worker``);
both vaults are local stores under the test's storage root, each in its own directory.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from portal import clock
from portal.gate import DomainError
from portal.models import Alert, AuditRecord
from tests.conftest import api_client_for, make_user
from tests.factories import lock_vault, make_vault, stored_digest
from tests.test_jobs import (  # noqa: F401  (fixtures)
    backup_now,
    people,
    protect,
    storage,
    tree_of,
    wait_for,
    worker,
    write_tree,
)
from vaults import locations
from vaults import services as vault_services
from vaults.jobs import replication, requests
from vaults.models import Job, ProtectedItem, RecoveryPoint, Vault


def pair(admin: Any, source: Vault, replica: Vault) -> Vault:
    return vault_services.replica_set(actor=admin, vault=source, replica=replica)


def copies_done(source: Vault, count: int = 1, timeout: float = 90.0) -> list[Job]:
    """Bounded polling until ``count`` copy jobs of ``source`` exist (a backup queues its copy
    once its own transaction commits, just after the backup job reads completed) and end."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = list(Job.objects.filter(vault=source, kind="copy").values_list("pk", flat=True))
        if len(jobs) >= count or time.monotonic() > deadline:
            return wait_for(*jobs, timeout=timeout)
        time.sleep(0.05)


def the_copy(point: RecoveryPoint) -> RecoveryPoint:
    return RecoveryPoint.objects.get(source_vault=point.vault.name, source_point_ref=point.pk)


# --- on a real worker ---------------------------------------------------------------------------


def test_backup_is_copied_to_the_replica_and_restores_byte_for_byte(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    worker: Any,  # noqa: F811
) -> None:
    admin, operator = people["admin"], people["operator"]
    source = make_vault(admin, name="src", region="westeurope")
    replica = make_vault(admin, name="rep", region="northeurope")
    api = api_client_for(admin)
    answer = api.put("/api/v1/vaults/src/replica/", {"vault": "rep"}, format="json")
    assert answer.status_code == 200, answer.json()
    assert answer.json()["replica"]["vault"] == "rep"
    assert answer.json()["replica"]["lag_seconds"] == 0
    item = protect(admin, source, write_tree(storage / "data"), "docs")

    point = backup_now(item, operator)
    (copy_job,) = copies_done(source)
    assert copy_job.status == "completed", copy_job.error
    copy = the_copy(point)
    assert copy.vault == replica
    assert copy.digest == stored_digest(copy) != point.digest  # the replica's own keyed ids
    assert (copy.created_at, copy.expires_at, copy.tags) == (
        point.created_at,
        point.expires_at,
        point.tags,
    )
    assert copy.item.source_kind == ProtectedItem.SourceKind.REPLICA
    assert copy.item.name == "docs" and copy.verified_at is not None

    # The API names both ends.
    body = api.get("/api/v1/vaults/rep/items/docs/recovery-points/").json()["results"][0]
    assert body["source_point"] == {"vault": "src", "id": point.pk}
    assert body["digest"] == copy.digest
    assert api.get("/api/v1/vaults/rep/items/docs/").json()["source"] == {
        "kind": "replica",
        "vault": "src",
    }
    vaults = {v["name"]: v for v in api.get("/api/v1/vaults/").json()["results"]}
    assert vaults["src"]["replica"]["lag_seconds"] == 0
    assert vaults["src"]["replica"]["last_copied_at"] is not None
    assert vaults["rep"]["replica_of"] == "src" and vaults["rep"]["replica"] is None
    source_point_body = api.get(f"/api/v1/vaults/src/items/docs/recovery-points/{point.pk}/")
    assert source_point_body.json()["source_point"] is None

    # Cross-region restore: from the replica's copy, byte for byte.
    target = storage / "restores" / "from-replica"
    job = requests.restore_request(actor=operator, point=copy, target_path=str(target))
    (done,) = wait_for(job.pk)
    assert done.status == "completed", done.error
    assert tree_of(target) == tree_of(storage / "data")
    assert locations.vault_store(replica).verify(copy.storage_key).ok
    # Verification runs on the copy as on any point.
    (verified,) = wait_for(requests.verify_request(actor=operator, point=copy).pk)
    assert verified.status == "completed", verified.error

    # A second backup copies once more; the sweep finds nothing left to do.
    second = backup_now(item, operator)
    assert all(job.status == "completed" for job in copies_done(source, 2))
    assert the_copy(second).digest == stored_digest(the_copy(second))
    assert replication.replication_sweep()["copies_queued"] == 0
    assert RecoveryPoint.objects.filter(vault=replica).count() == 2


def test_points_made_before_pairing_are_backfilled_newest_first_and_changes_move_little(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    worker: Any,  # noqa: F811
) -> None:
    admin, operator = people["admin"], people["operator"]
    source = make_vault(admin, name="old-src", region="westeurope")
    replica = make_vault(admin, name="old-rep", region="eastus")
    data = storage / "data"
    data.mkdir()
    for i in range(100):  # 100 files of 200 KiB..1.2 MiB, incompressible
        (data / f"f{i:03d}.bin").write_bytes(os.urandom(200 * 1024 + i * 10 * 1024))
    item = protect(admin, source, data, "files")
    first = backup_now(item, operator)
    (data / "f050.bin").write_bytes(os.urandom(700 * 1024))  # about 1% of the data changes
    second = backup_now(item, operator)

    pair(admin, source, replica)
    jobs = list(Job.objects.filter(vault=source, kind="copy").order_by("pk"))
    assert [job.recovery_point_id for job in jobs] == [second.pk, first.pk]  # newest first
    done = wait_for(*(job.pk for job in jobs), timeout=120)
    assert all(job.status == "completed" for job in done), [job.error for job in done]
    newest, oldest = done
    total = second.logical_bytes
    # The newest point travels whole; the older one, copied second, only what it does not
    # share with it: its version of the changed file.
    assert newest.params["bytes_moved"] >= total * 0.9
    assert oldest.params["bytes_moved"] < total * 0.05
    assert oldest.params["chunks_copied"] < oldest.params["chunks_total"] * 0.05

    # A third backup after another 1% change: its copy moves under 5% of the bytes.
    (data / "f010.bin").write_bytes(os.urandom(700 * 1024))
    third = backup_now(item, operator)
    copy_job = copies_done(source, 3, timeout=120)[-1]
    assert copy_job.status == "completed", copy_job.error
    assert 0 < copy_job.params["bytes_moved"] < total * 0.05
    assert the_copy(third).digest == stored_digest(the_copy(third))


def test_a_copy_that_fails_says_why_and_is_retried_after_a_backoff(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    worker: Any,  # noqa: F811
) -> None:
    admin, operator = people["admin"], people["operator"]
    source = make_vault(admin, name="flaky", region="westeurope")
    replica = make_vault(admin, name="flaky-rep", region="eastus")
    item = protect(admin, source, write_tree(storage / "data"), "docs")
    point = backup_now(item, operator)
    store = locations.vault_store(source)
    # A chunk of the source point is lost (a damaged disk): the copy must not publish.
    lost = next(iter(store.manifest(point.storage_key).chunks))
    from vaults.storage.chunks import chunk_key

    chunk_path = Path(store.backend.root) / chunk_key(lost)  # type: ignore[attr-defined]
    saved = chunk_path.read_bytes()
    chunk_path.unlink()
    pair(admin, source, replica)
    (failed,) = copies_done(source)
    assert failed.status == "failed"
    assert "source copy is incomplete or damaged" in failed.error and "flaky-rep" in failed.error
    assert not RecoveryPoint.objects.filter(vault=replica).exists()
    assert Alert.objects.filter(kind="copy_failed", vault_name="flaky").exists()
    # Within the backoff the sweep waits; after it, it tries again, and the copy resumes.
    assert replication.replication_sweep()["copies_queued"] == 0
    chunk_path.write_bytes(saved)
    clock.set_now(clock.now() + timedelta(minutes=2))
    try:
        assert replication.replication_sweep()["copies_queued"] == 1
    finally:
        clock.set_now(None)
    retry = Job.objects.filter(vault=source, kind="copy").order_by("-pk").first()
    assert retry is not None
    (retry,) = wait_for(retry.pk)
    assert retry.status == "completed", retry.error
    assert the_copy(point).digest == stored_digest(the_copy(point))


# --- pairing rules ----------------------------------------------------------------------------


@pytest.fixture
def vaults(admin: Any) -> dict[str, Vault]:
    return {
        "a": make_vault(admin, name="a-west", region="westeurope"),
        "b": make_vault(admin, name="b-north", region="northeurope"),
        "c": make_vault(admin, name="c-east", region="eastus"),
        "same": make_vault(admin, name="same-region", region="westeurope"),
        "backup": make_vault(admin, name="other-kind", region="eastus2", kind="backup"),
    }


@pytest.mark.parametrize(
    ("source", "target", "words"),
    [
        ("a", "a", "its own replica"),
        ("a", "same", "region westeurope"),
        ("a", "backup", "same kind"),
    ],
)
def test_pairing_is_refused_with_a_validation_error_naming_the_field(
    admin: Any, vaults: dict[str, Vault], source: str, target: str, words: str
) -> None:
    with pytest.raises(DomainError) as refused:
        pair(admin, vaults[source], vaults[target])
    assert refused.value.code == "validation_error" and refused.value.field == "vault"
    assert words in refused.value.detail
    assert Vault.objects.filter(replica__isnull=False).count() == 0
    assert AuditRecord.objects.filter(operation="replica_set", outcome="refused").exists()


def test_chains_and_cycles_are_refused(admin: Any, vaults: dict[str, Vault]) -> None:
    a, b, c = vaults["a"], vaults["b"], vaults["c"]
    pair(admin, a, b)
    for source, target in ((b, a), (b, c), (c, b), (c, a)):
        with pytest.raises(DomainError) as refused:
            pair(admin, Vault.objects.get(pk=source.pk), Vault.objects.get(pk=target.pk))
        assert refused.value.code == "validation_error", (source, target)
    # Re-pointing is not a way round: remove first (a protected operation).
    with pytest.raises(DomainError) as refused:
        pair(admin, Vault.objects.get(pk=a.pk), c)
    assert refused.value.code == "validation_error" and "remove that pairing" in (
        refused.value.detail
    )
    assert Vault.objects.get(pk=a.pk).replica_id == b.pk
    # The same pairing again changes nothing.
    assert pair(admin, Vault.objects.get(pk=a.pk), b).replica_id == b.pk


def test_a_weaker_replica_is_refused(admin: Any, vaults: dict[str, Vault]) -> None:
    a = vault_services.immutability_set(actor=admin, vault=vaults["a"], state="enabled")
    with pytest.raises(DomainError) as refused:
        pair(admin, a, vaults["b"])
    assert refused.value.code == "immutable_vault"
    assert Alert.objects.filter(kind="operation_refused", vault_name="a-west").exists()
    b = vault_services.immutability_set(actor=admin, vault=vaults["b"], state="enabled")
    assert pair(admin, a, b).replica_id == b.pk


def test_readers_and_operators_cannot_pair_or_unpair(
    admin: Any, reader: Any, operator: Any, vaults: dict[str, Vault]
) -> None:
    for user in (reader, operator):
        client = api_client_for(user)
        answer = client.put("/api/v1/vaults/a-west/replica/", {"vault": "b-north"}, format="json")
        assert answer.status_code == 403 and answer.json()["code"] == "permission_denied"
    pair(admin, vaults["a"], vaults["b"])
    for user in (reader, operator):
        answer = api_client_for(user).delete("/api/v1/vaults/a-west/replica/")
        assert answer.status_code == 403
    assert Vault.objects.get(pk=vaults["a"].pk).replica_id == vaults["b"].pk


def test_api_errors_are_stable(admin: Any, vaults: dict[str, Vault]) -> None:
    client = api_client_for(admin)
    unknown = client.put("/api/v1/vaults/a-west/replica/", {"vault": "nope"}, format="json")
    assert unknown.status_code == 400 and unknown.json()["code"] == "validation_error"
    missing = client.put("/api/v1/vaults/a-west/replica/", {}, format="json")
    assert missing.status_code == 400
    nothing = client.delete("/api/v1/vaults/a-west/replica/")
    assert nothing.status_code == 400 and nothing.json()["code"] == "validation_error"
    assert client.put("/api/v1/vaults/zzz/replica/", {"vault": "a-west"}).status_code == 404


# --- locks follow -------------------------------------------------------------------------------


def test_immutability_follows_and_a_locked_pairing_stays(
    admin: Any, vaults: dict[str, Vault], tmp_path: Path
) -> None:
    a, b = vaults["a"], vaults["b"]
    pair(admin, a, b)
    a = vault_services.immutability_set(
        actor=admin, vault=Vault.objects.get(pk=a.pk), state="enabled"
    )
    b.refresh_from_db()
    assert b.immutability == "enabled"
    # The replica cannot fall below its source.
    with pytest.raises(DomainError) as refused:
        vault_services.immutability_set(actor=admin, vault=b, state="disabled")
    assert refused.value.code == "immutable_vault"
    # The lock approval says it locks both, and does, in one transaction.
    approval = vault_services.immutability_lock_request(actor=admin, vault=a, confirmation=a.name)
    assert approval.payload == {"also_locks": "b-north"}
    a = lock_vault(Vault.objects.get(pk=a.pk), requester=admin)
    b.refresh_from_db()
    assert (a.immutability, b.immutability) == ("locked", "locked")
    # On a locked vault the pairing is for good: not removed, not re-pointed.
    with pytest.raises(DomainError) as refused:
        vault_services.replica_remove(actor=admin, vault=a)
    assert refused.value.code == "immutability_locked"
    with pytest.raises(DomainError) as refused:
        pair(admin, a, vaults["c"])
    assert refused.value.code == "immutability_locked"
    answer = api_client_for(admin).delete("/api/v1/vaults/a-west/replica/")
    assert answer.status_code == 409 and answer.json()["code"] == "immutability_locked"
    assert Vault.objects.get(pk=a.pk).replica_id == b.pk
    # Nor is the replica vault deleted while paired.
    with pytest.raises(DomainError):
        vault_services.vault_delete(actor=admin, vault=b)
    assert Vault.objects.filter(pk=b.pk).exists()


def test_stop_replication_on_an_enabled_vault_needs_elevation(
    admin: Any, vaults: dict[str, Vault]
) -> None:
    from guards import services as guard_services

    owner = make_user("gwen", "security_admin")
    guard = guard_services.guard_create(actor=owner, name="guard-rep")
    assert "stop_replication" in guard.protected_operations  # on by default
    a = vault_services.immutability_set(actor=admin, vault=vaults["a"], state="enabled")
    b = vault_services.immutability_set(actor=admin, vault=vaults["b"], state="enabled")
    pair(admin, a, b)
    vault_services.vault_guard_set(actor=admin, vault=Vault.objects.get(pk=a.pk), guard=guard)
    answer = api_client_for(admin).delete("/api/v1/vaults/a-west/replica/")
    assert answer.status_code == 409 and answer.json()["code"] == "mua_required"
    assert Vault.objects.get(pk=a.pk).replica_id == b.pk


def test_unpairing_keeps_the_copies(admin: Any, vaults: dict[str, Vault]) -> None:
    a, b = vaults["a"], vaults["b"]
    pair(admin, a, b)
    vault = vault_services.replica_remove(actor=admin, vault=Vault.objects.get(pk=a.pk))
    assert vault.replica_id is None
    assert AuditRecord.objects.filter(operation="replica_remove", outcome="allowed").exists()
    assert Alert.objects.filter(kind="replication_stopped", vault_name="a-west").exists()


def test_a_replica_item_is_never_backed_up(
    admin: Any, operator: Any, vaults: dict[str, Vault], tmp_path: Path
) -> None:
    from policies import services as policy_services

    policy = policy_services.policy_create(actor=admin, vault=vaults["b"], name="p")
    item = ProtectedItem.objects.create(
        vault=vaults["b"], name="docs", source_kind="replica", source_path="a-west", policy=policy
    )
    with pytest.raises(DomainError) as refused:
        requests.backup_request(actor=operator, item=item)
    assert refused.value.code == "validation_error" and "replica" in refused.value.detail
    # And no one protects a "replica" source by hand.
    with pytest.raises(DomainError):
        vault_services.item_protect(
            actor=admin,
            vault=vaults["b"],
            name="fake",
            source_kind="replica",
            source_path="a-west",
            policy=policy,
        )


# --- expiry and deletion ------------------------------------------------------------------------


def _recorded_copy(admin: Any, vaults: dict[str, Vault], tmp_path: Path) -> Any:
    from policies import services as policy_services

    a, b = vaults["a"], vaults["b"]
    pair(admin, a, b)
    policy = policy_services.policy_create(actor=admin, vault=a, name="daily", daily_days=30)
    item = vault_services.item_protect(
        actor=admin, vault=a, name="files", source_path=str(tmp_path), policy=policy
    )
    point = vault_services.point_record(item=item)
    copy = vault_services.replica_point_record(
        replica=b, source_point=point, stored_bytes=0, digest=""
    )
    return point, copy, policy


def test_a_longer_expiry_on_the_source_reaches_the_copy_and_a_shorter_one_does_not(
    admin: Any, vaults: dict[str, Vault], tmp_path: Path
) -> None:
    from policies import services as policy_services

    point, copy, policy = _recorded_copy(admin, vaults, tmp_path)
    later = point.expires_at + timedelta(days=40)
    vault_services.point_retain_until(actor=admin, point=point, retain_until=later)
    copy.refresh_from_db()
    assert copy.expires_at == later
    # A longer policy retention too.
    policy_services.policy_update(actor=admin, policy=policy, changes={"daily_days": 400})
    point.refresh_from_db()
    copy.refresh_from_db()
    assert copy.expires_at == point.expires_at > later
    # A shorter date on the source (its vault allows it) leaves the copy's alone.
    before = copy.expires_at
    vault_services.point_retain_until(
        actor=admin, point=point, retain_until=clock.now() + timedelta(days=2)
    )
    copy.refresh_from_db()
    assert copy.expires_at == before


def test_deleting_the_source_point_or_item_never_takes_the_copy(
    admin: Any, vaults: dict[str, Vault], tmp_path: Path
) -> None:
    point, copy, _policy = _recorded_copy(admin, vaults, tmp_path)
    vault_services.soft_delete_set(
        actor=admin,
        vault=Vault.objects.get(pk=vaults["a"].pk),
        state="disabled",
        confirm_purge_count=0,
    )
    vault_services.point_delete(actor=admin, point=point)
    assert not RecoveryPoint.objects.filter(pk=point.pk).exists()
    kept = RecoveryPoint.objects.get(pk=copy.pk)
    assert (kept.expires_at, kept.source_point_ref) == (copy.expires_at, point.pk)
    api = api_client_for(admin)
    body = api.get(f"/api/v1/vaults/b-north/items/files/recovery-points/{copy.pk}/").json()
    assert body["source_point"] == {"vault": "a-west", "id": point.pk}


def test_replica_items_are_left_out_of_scheduled_backups(
    admin: Any, vaults: dict[str, Vault], tmp_path: Path
) -> None:
    from vaults.jobs import schedules

    _point, copy, _policy = _recorded_copy(admin, vaults, tmp_path)
    clock.set_now(clock.now().replace(hour=22, minute=0, second=30))
    try:
        jobs = schedules.backups_dispatch()
    finally:
        clock.set_now(None)
    assert all(job.item_id != copy.item_id for job in jobs)


def test_a_lag_past_the_rpo_raises_a_job_alert_naming_the_pair(
    admin: Any, vaults: dict[str, Vault], tmp_path: Path
) -> None:
    from policies import services as policy_services

    a, b = vaults["a"], vaults["b"]
    pair(admin, a, b)
    policy = policy_services.policy_create(actor=admin, vault=a, name="daily", daily_days=30)
    item = vault_services.item_protect(
        actor=admin, vault=a, name="files", source_path=str(tmp_path), policy=policy
    )
    point = vault_services.point_record(item=item, created_at=clock.now() - timedelta(hours=3))
    RecoveryPoint.objects.filter(pk=point.pk).update(storage_key="rp-lagging")
    report = replication.replication_sweep()
    assert report == {"copies_queued": 1, "lagging_vaults": 0}  # within the daily RPO
    assert not Alert.objects.filter(kind="replication_lag").exists()
    Job.objects.filter(kind="copy").update(
        status="failed", error="unreachable", ended_at=clock.now()
    )
    clock.set_now(clock.now() + timedelta(days=1))
    try:
        report = replication.replication_sweep()
    finally:
        clock.set_now(None)
    assert report["lagging_vaults"] == 1
    alert = Alert.objects.get(kind="replication_lag")
    assert alert.vault_name == "a-west" and alert.target == "replica:a-west->b-north"
    assert "a-west to b-north" in alert.message and "unreachable" in alert.message


def test_a_replica_on_overlapping_storage_is_refused(
    db: None, settings: Any, tmp_path: Path
) -> None:
    """Overlapping stores cannot both exist as vaults (vault_storage_apart); the pairing rule
    is checked on its own all the same, on S3 prefixes and local roots."""
    from vaults.services.replication import pairing_refusal

    settings.HOLDFAST_STORAGE_ROOT = tmp_path
    source = Vault(pk=1, name="s3-a", kind="backup", region="westeurope",
                   storage_location="s3://bucket/vaults")  # fmt: skip
    inside = Vault(pk=2, name="s3-b", kind="backup", region="eastus",
                   storage_location="s3://bucket/vaults/b")  # fmt: skip
    refusal = pairing_refusal(source, inside)
    assert refusal is not None and refusal.code == "validation_error"
    assert "overlaps" in refusal.detail
    apart = Vault(pk=3, name="s3-c", kind="backup", region="eastus",
                  storage_location="s3://other-bucket/vaults")  # fmt: skip
    assert (
        pairing_refusal(source, apart) is None
        or "overlaps" not in pairing_refusal(source, apart).detail
    )


def test_options_on_the_replica_endpoint_answers(admin: Any, vaults: dict[str, Vault]) -> None:
    client = api_client_for(admin)
    assert client.options("/api/v1/vaults/a-west/replica/").status_code == 200
    missing = client.put("/api/v1/vaults/a-west/replica/", {}, format="json")
    assert missing.status_code == 400 and missing.json()["detail"].startswith("vault: ")


def test_a_copy_asked_by_a_person_needs_operate_and_is_queued_once(
    admin: Any, reader: Any, operator: Any, vaults: dict[str, Vault], tmp_path: Path
) -> None:
    point, _copy, _policy = _recorded_copy(admin, vaults, tmp_path)
    fresh = vault_services.point_record(item=point.item)
    RecoveryPoint.objects.filter(pk=fresh.pk).update(storage_key="rp-fresh")
    fresh.refresh_from_db()
    with pytest.raises(DomainError) as refused:
        replication.copy_request(fresh, actor=reader)
    assert refused.value.code == "permission_denied"
    job = replication.copy_request(fresh, actor=operator)
    assert job is not None and job.params["replica"] == "b-north"
    assert replication.copy_request(fresh, actor=operator) is None  # one at a time
    assert replication.copy_request(point) is None  # already copied
    assert AuditRecord.objects.filter(operation="copy_start", outcome="allowed").count() == 2


def test_an_archived_point_is_copied_into_the_replicas_archive_and_restores_there(
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    worker: Any,  # noqa: F811
) -> None:
    from datetime import UTC, datetime

    from vaults.jobs import schedules

    admin, operator = people["admin"], people["operator"]
    data = write_tree(storage / "src")
    clock.set_now(datetime(2026, 3, 1, 22, 0, 10, tzinfo=UTC))  # a monthly point
    try:
        source = make_vault(admin, name="cold", region="westeurope")
        replica = make_vault(admin, name="cold-rep", region="eastus")
        item = protect(
            admin, source, data, monthly_months=12, tiering_mode="after", tiering_after_days=90
        )
        (job,) = schedules.backups_dispatch()
        wait_for(job.pk)
        clock.advance(timedelta(days=91))
        (move,) = schedules.tier_moves_schedule()
        assert wait_for(move.pk)[0].status == "completed"
        point = item.recovery_points.get()
        assert point.tier == "vault_archive"

        pair(admin, source, replica)
        (copy_job,) = copies_done(source)
        assert copy_job.status == "completed", copy_job.error
        copy = the_copy(point)
        assert copy.tier == "vault_archive" and copy.digest == stored_digest(copy)
        assert locations.archive_store(replica).has_point(copy.storage_key)
        assert not locations.vault_store(replica).has_point(copy.storage_key)

        (rehydrated,) = wait_for(requests.rehydrate_request(actor=operator, point=copy, days=10).pk)
        assert rehydrated.status == "completed", rehydrated.error
        target = storage / "restores" / "cold-copy"
        copy.refresh_from_db()
        (restored,) = wait_for(
            requests.restore_request(actor=operator, point=copy, target_path=str(target)).pk
        )
        assert restored.status == "completed", restored.error
        assert tree_of(target) == tree_of(data)
    finally:
        clock.set_now(None)
