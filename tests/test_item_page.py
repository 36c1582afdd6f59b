"""The item page: Back up now with retain-until, the RPO state, recent jobs, the points as a
timeline (newest first, tier badges) with browse, restore and delete, the delete saying
beforehand why the gate would refuse it; a query count that does not grow with the points."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from guards.models import ResourceGuard
from portal import clock
from tests.point_world import backed_up, point_fixture, protect, stores_fixture  # noqa: F401
from vaults.models import Job, ProtectedItem, RecoveryPoint, Vault

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _page(user: Any, item: ProtectedItem) -> str:
    response = _client(user).get(reverse("vaults:item", args=[item.vault.name, item.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_back_up_now_with_retain_until_from_the_item_page(
    operator: Any, admin: Any, stores: dict[str, Path]
) -> None:
    item = protect(admin, stores["source"])
    page = _page(operator, item)
    action = reverse("vaults:item-backup", args=[item.vault.name, item.pk])
    assert f'action="{action}"' in page and 'type="datetime-local" name="retain_until"' in page
    until = (clock.now() + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M")
    response = _client(operator).post(action, {"retain_until": until})
    job = Job.objects.get(kind="backup")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.params["on_demand"] and job.params["retain_until"].startswith(until[:10])
    assert job.requested_by == operator


def test_a_refused_backup_now_is_shown_in_its_card_and_queues_nothing(
    operator: Any, admin: Any, stores: dict[str, Path]
) -> None:
    item = protect(admin, stores["source"])
    action = reverse("vaults:item-backup", args=[item.vault.name, item.pk])
    past = (clock.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = _client(operator).post(action, {"retain_until": past})
    assert response.status_code == 400
    card = response.content.decode().split('id="backup-now"')[1].split("</section>")[0]
    assert "choose a time in the future" in card and 'aria-invalid="true"' in card
    assert not Job.objects.exists()
    ProtectedItem.objects.filter(pk=item.pk).update(protection_state="protection_stopped")
    response = _client(operator).post(action, {"retain_until": ""})
    assert response.status_code == 400
    assert "resume protection first" in response.content.decode()
    assert not Job.objects.exists()


def test_a_reader_forging_back_up_now_is_refused_and_audited(
    reader: Any, admin: Any, stores: dict[str, Path]
) -> None:
    from portal.models import AuditRecord

    item = protect(admin, stores["source"])
    action = reverse("vaults:item-backup", args=[item.vault.name, item.pk])
    assert _client(reader).post(action, {"retain_until": ""}).status_code == 403
    assert not Job.objects.exists()
    record = AuditRecord.objects.get(operation="backup_run")
    assert record.outcome == "refused" and record.code == "permission_denied"


def test_the_timeline_lists_points_newest_first_with_tiers_jobs_and_rpo_met(
    operator: Any, point: RecoveryPoint, admin: Any
) -> None:
    later = backed_up(admin, point.item)
    RecoveryPoint.objects.filter(pk=point.pk).update(
        created_at=point.created_at - timedelta(days=1), tier="vault_standard"
    )
    page = _page(operator, point.item)
    assert page.index(f'id="point-{later.pk}"') < page.index(f'id="point-{point.pk}"')
    assert page.count('class="timeline-day"') == 2
    assert 'class="tier tier-snapshot_and_vault">Snapshot and vault-standard' in page
    assert 'class="tier tier-vault_standard">Vault-standard' in page
    assert "RPO met" in page
    assert f'href="{reverse("jobs:restore", args=[later.pk])}"' in page
    browse = reverse("vaults:point-browse", args=["vault-one", point.item_id, point.pk])
    assert f'href="{browse}"' in page
    jobs = page.split('id="item-jobs"')[1].split("</section>")[0]
    assert jobs.count('class="job-state job-state-completed"') == 2


def test_an_item_without_a_recent_backup_shows_rpo_missed(
    operator: Any, point: RecoveryPoint
) -> None:
    ProtectedItem.objects.filter(pk=point.item_id).update(
        last_backup_at=clock.now() - timedelta(days=3)
    )
    assert "RPO missed" in _page(operator, point.item)


def test_delete_asks_to_confirm_and_says_soft_delete_applies(
    admin: Any, point: RecoveryPoint
) -> None:
    page = _page(admin, point.item)
    assert '<details class="delete-confirm">' in page
    assert "Soft delete is on:</strong> the point is kept, restorable, for 14 days" in page
    assert f'id="delete-{point.pk}"' in page


def test_delete_without_soft_delete_says_it_cannot_be_undone(
    admin: Any, point: RecoveryPoint
) -> None:
    Vault.objects.filter(pk=point.vault_id).update(soft_delete_state="disabled")
    assert "This cannot be undone:</strong> soft delete is off" in _page(admin, point.item)


def test_an_immutable_point_says_why_delete_would_be_refused_and_offers_no_button(
    admin: Any, stores: dict[str, Path]
) -> None:
    item = protect(admin, stores["source"], immutability="enabled")
    point = backed_up(admin, item)
    page = _page(admin, item)
    hint = f"retained until {point.expires_at:%Y-%m-%d %H:%M} UTC by immutability"
    assert hint in page
    assert f'id="delete-{point.pk}"' not in page
    # The forged POST is refused by the gate all the same.
    url = reverse("vaults:point-delete", args=[item.vault.name, item.pk, point.pk])
    assert _client(admin).post(url).status_code == 409
    assert RecoveryPoint.objects.filter(pk=point.pk).exists()


def test_a_guarded_delete_is_marked_before_the_click(
    admin: Any, security_admin: Any, point: RecoveryPoint
) -> None:
    guard = ResourceGuard.objects.create(
        name="guard-one", owner=security_admin, protected_operations=["delete_recovery_point"]
    )
    Vault.objects.filter(pk=point.vault_id).update(resource_guard=guard)
    page = _page(admin, point.item)
    marker = page.split(f'id="point-{point.pk}"')[1].split(f'id="delete-{point.pk}"')[0]
    assert "Protected by" in marker and "guard-one" in marker


def test_a_reader_sees_the_timeline_but_no_action(reader: Any, point: RecoveryPoint) -> None:
    page = _page(reader, point.item)
    assert f'id="point-{point.pk}"' in page
    assert 'id="backup-now"' not in page
    assert "delete-confirm" not in page and f'id="restore-{point.pk}"' not in page


def test_a_forged_delete_of_another_vaults_point_is_not_found(
    admin: Any, point: RecoveryPoint, tmp_path: Path
) -> None:
    source = tmp_path / "other"
    source.mkdir()
    (source / "a.txt").write_text("a\n")
    other = backed_up(admin, protect(admin, source, vault_name="vault-two"))
    url = reverse("vaults:point-delete", args=["vault-one", point.item_id, other.pk])
    assert _client(admin).post(url).status_code == 404
    assert RecoveryPoint.objects.filter(pk=other.pk).exists()


def test_the_item_page_query_count_does_not_grow_with_points_or_jobs(
    admin: Any, point: RecoveryPoint
) -> None:
    client = _client(admin)
    url = reverse("vaults:item", args=["vault-one", point.item_id])
    client.get(url)
    with CaptureQueriesContext(connection) as few:
        assert client.get(url).status_code == 200
    for _ in range(6):
        backed_up(admin, point.item)
    with CaptureQueriesContext(connection) as many:
        page = client.get(url)
    assert page.content.decode().count('class="timeline-point"') == 7
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]


def test_back_up_now_for_another_vaults_item_is_not_found(
    operator: Any, admin: Any, stores: dict[str, Path], tmp_path: Path
) -> None:
    protect(admin, stores["source"])
    source = tmp_path / "other"
    source.mkdir()
    other = protect(admin, source, vault_name="vault-two")
    forged = reverse("vaults:item-backup", args=["vault-one", other.pk])
    assert _client(operator).post(forged, {"retain_until": ""}).status_code == 404
    assert not Job.objects.exists()
