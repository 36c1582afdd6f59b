"""Restore and download from the browser: the restore page's roots and selection, the
browse page's downloads (one file as it is, a selection as a streamed zip), and the attacks
on both (a reader, another vault's point, paths outside the point or the restore roots, a
symlink, a selection over the size limit)."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from portal import clock
from portal.models import AuditRecord
from tests.point_world import backed_up, point_fixture, protect, stores_fixture  # noqa: F401
from vaults.jobs import runner
from vaults.models import Job, RecoveryPoint

pytestmark = pytest.mark.django_db


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _browse(point: RecoveryPoint) -> str:
    return reverse("vaults:point-browse", args=[point.vault.name, point.item_id, point.pk])


def _download(point: RecoveryPoint) -> str:
    return reverse("vaults:point-download", args=[point.vault.name, point.item_id, point.pk])


def _restore(point: RecoveryPoint) -> str:
    return reverse("jobs:restore", args=[point.pk])


# --- the restore page ---------------------------------------------------------------------


def test_the_restore_page_lists_the_allowed_roots_with_a_picker_and_a_primary_button(
    operator: Any, point: RecoveryPoint, stores: dict[str, Path]
) -> None:
    page = _client(operator).get(_restore(point)).content.decode()
    assert f"<code>{stores['restores']}</code>" in page
    assert f"<code>{stores['other']}</code>" in page
    assert f'<option value="{stores["other"]}"' in page
    assert 'class="check"' in page and 'name="overwrite"' in page
    assert 'class="primary" id="restore-submit"' in page
    assert 'name="target_host"' in page and "Restore on host" in page  # SPEC 3.13


def test_a_selected_file_restores_under_the_chosen_root_and_folder(
    operator: Any, point: RecoveryPoint, stores: dict[str, Path]
) -> None:
    client = _client(operator)
    # The browse page posts its selection to the restore page, which asks where.
    chosen = client.post(_restore(point), {"path": ["reports/q2.txt", "notes.txt"]})
    assert chosen.status_code == 200
    assert "Restore 2 selected" in chosen.content.decode()
    response = client.post(
        _restore(point),
        {"path": ["reports/q2.txt", "notes.txt"], "root": str(stores["other"]), "folder": "day1"},
    )
    job = Job.objects.get(kind="restore")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.params["target_path"] == str(stores["other"] / "day1")
    assert job.params["sub_paths"] == ["reports/q2.txt", "notes.txt"]
    finished = runner.job_run(job_id=job.pk)
    assert finished is not None and finished.status == "completed", finished.error
    target = stores["other"] / "day1"
    assert (target / "q2.txt").read_bytes() == (stores["source"] / "reports/q2.txt").read_bytes()
    assert (target / "notes.txt").read_text() == "first notes\n"
    assert not (target / "budget.csv").exists()
    assert finished.files_total == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [("folder", "../escape"), ("folder", "/etc"), ("folder", "a/../../b"), ("root", "/etc")],
)
def test_a_target_outside_the_roots_is_a_form_error_and_queues_nothing(
    operator: Any, point: RecoveryPoint, stores: dict[str, Path], field: str, value: str
) -> None:
    data = {"root": str(stores["restores"]), "folder": "", field: value}
    response = _client(operator).post(_restore(point), data)
    assert response.status_code == 400
    assert 'class="error"' in response.content.decode()
    assert not Job.objects.filter(kind="restore").exists()


def test_a_folder_that_is_a_symlink_out_of_the_roots_is_refused_by_the_service(
    operator: Any, point: RecoveryPoint, stores: dict[str, Path], tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (stores["restores"] / "sneaky").symlink_to(outside, target_is_directory=True)
    response = _client(operator).post(
        _restore(point), {"root": str(stores["restores"]), "folder": "sneaky"}
    )
    assert response.status_code == 400
    assert "outside the allowed restore locations" in response.content.decode()
    assert not Job.objects.filter(kind="restore").exists()
    assert list(outside.iterdir()) == []
    refused = AuditRecord.objects.get(operation="restore_start")
    assert refused.outcome == "refused" and refused.code == "validation_error"


def test_a_reader_sees_no_restore_form_and_a_forged_restore_is_refused_and_audited(
    reader: Any, point: RecoveryPoint, stores: dict[str, Path]
) -> None:
    client = _client(reader)
    assert client.get(_restore(point)).status_code == 403
    assert client.post(_restore(point), {"path": ["notes.txt"]}).status_code == 403
    forged = client.post(_restore(point), {"root": str(stores["restores"]), "folder": ""})
    assert forged.status_code == 403
    assert not Job.objects.filter(kind="restore").exists()
    record = AuditRecord.objects.get(operation="restore_start")
    assert record.outcome == "refused" and record.code == "permission_denied"
    assert (
        "Restore"
        not in client.get(_browse(point))
        .content.decode()
        .split("<main")[1]
        .split("Recovery point of")[0]
    )


def test_an_archived_point_offers_rehydration_first_with_the_wait_explained(
    operator: Any, point: RecoveryPoint
) -> None:
    RecoveryPoint.objects.filter(pk=point.pk).update(tier="vault_archive")
    page = _client(operator).get(_restore(point)).content.decode()
    assert "Rehydrate first" in page and "How long it takes" in page
    assert reverse("jobs:rehydrate", args=[point.pk]) in page
    assert 'id="restore-form"' not in page


def test_a_soft_deleted_point_says_to_undelete_it_first(
    operator: Any, point: RecoveryPoint
) -> None:
    now = clock.now()
    RecoveryPoint.objects.filter(pk=point.pk).update(
        expires_at=now - timedelta(hours=1), soft_deleted_until=now + timedelta(days=13)
    )
    client = _client(operator)
    page = client.get(_restore(point)).content.decode()
    assert "This point is soft-deleted" in page and "Undelete it first" in page
    assert 'id="restore-form"' not in page
    refused = client.post(_download(point), {"path": "notes.txt"})
    assert refused.status_code == 400 and "retain it again" in refused.content.decode()


def test_the_api_restores_a_selection_of_paths(
    api: Any, operator: Any, point: RecoveryPoint, stores: dict[str, Path]
) -> None:
    url = f"/api/v1/vaults/{point.vault.name}/items/docs/recovery-points/{point.pk}/restore/"
    response = api(operator).post(
        url,
        {"target_path": str(stores["restores"]), "sub_paths": ["reports", "notes.txt"]},
        format="json",
    )
    assert response.status_code == 202, response.content
    runner.job_run(job_id=response.json()["id"])
    assert (stores["restores"] / "reports" / "q1.txt").read_text() == "quarter one\n"
    assert (stores["restores"] / "notes.txt").exists()
    bad = api(operator).post(
        url, {"target_path": str(stores["restores"]), "sub_paths": ["../x"]}, format="json"
    )
    assert bad.status_code == 400 and bad.json()["code"] == "validation_error"


# --- downloads ----------------------------------------------------------------------------


def _body(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def test_one_file_downloads_as_it_is_and_is_audited_as_a_restore(
    operator: Any, point: RecoveryPoint, stores: dict[str, Path]
) -> None:
    response = _client(operator).post(_download(point), {"path": "reports/q2.txt"})
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="q2.txt"')
    assert _body(response) == (stores["source"] / "reports" / "q2.txt").read_bytes()
    record = AuditRecord.objects.get(operation="point_download")
    assert record.outcome == "allowed" and record.actor_name == "oscar"
    assert record.after["paths"] == ["reports/q2.txt"]
    assert record.after["bytes"] == len("quarter two\n" * 100)


def test_a_selection_downloads_as_a_streamed_zip(
    operator: Any, point: RecoveryPoint, stores: dict[str, Path]
) -> None:
    response = _client(operator).post(_download(point), {"path": ["reports", "budget.csv"]})
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert response.streaming
    pieces = list(response.streaming_content)
    assert len(pieces) > 3  # written out file by file as read, not built whole first
    archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
    assert archive.testzip() is None
    names = sorted(archive.namelist())
    assert names == ["budget.csv", "reports/", "reports/q1.txt", "reports/q2.txt"]
    assert archive.read("budget.csv") == (stores["source"] / "budget.csv").read_bytes()
    assert archive.read("reports/q1.txt") == b"quarter one\n"


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "reports/../..", "nothere"])
def test_a_path_not_in_the_point_is_refused_on_the_browse_page_and_sends_nothing(
    operator: Any, point: RecoveryPoint, path: str
) -> None:
    response = _client(operator).post(_download(point), {"path": path})
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert 'id="download-refusal"' in page and "Nothing was downloaded" in page
    record = AuditRecord.objects.get(operation="point_download")
    assert record.outcome == "refused" and record.code == "validation_error"


def test_a_selection_over_the_size_limit_is_refused_with_the_reason(
    operator: Any, point: RecoveryPoint, settings: Any
) -> None:
    settings.HOLDFAST_DOWNLOAD_MAX_BYTES = 100
    response = _client(operator).post(_download(point), {"path": ["reports", "budget.csv"]})
    assert response.status_code == 409
    page = response.content.decode()
    assert "more than the 100" in page and "restore them to a restore root instead" in page
    assert AuditRecord.objects.get(operation="point_download").code == "download_too_large"


def test_a_reader_cannot_download_and_the_attempt_is_audited(
    reader: Any, point: RecoveryPoint
) -> None:
    client = _client(reader)
    page = client.get(_browse(point)).content.decode()
    assert 'name="path"' not in page and "Download selected" not in page
    response = client.post(_download(point), {"path": "notes.txt"})
    assert response.status_code == 403
    assert b"first notes" not in response.content
    record = AuditRecord.objects.get(operation="point_download")
    assert record.outcome == "refused" and record.code == "permission_denied"


def test_a_point_of_another_vaults_item_in_the_url_is_not_found(
    admin: Any, operator: Any, point: RecoveryPoint, stores: dict[str, Path], tmp_path: Path
) -> None:
    other_source = tmp_path / "other"
    other_source.mkdir()
    (other_source / "secret.txt").write_text("other vault\n")
    other_item = protect(admin, other_source, vault_name="vault-two")
    other = backed_up(admin, other_item)
    client = _client(operator)
    # The first vault's item with the second vault's point id, and the reverse.
    forged = reverse("vaults:point-download", args=["vault-one", point.item_id, other.pk])
    assert client.post(forged, {"path": "secret.txt"}).status_code == 404
    forged = reverse("vaults:point-download", args=["vault-one", other_item.pk, other.pk])
    assert client.post(forged, {"path": "secret.txt"}).status_code == 404
    forged = reverse("vaults:point-browse", args=["vault-one", point.item_id, other.pk])
    assert client.get(forged).status_code == 404
    assert not AuditRecord.objects.filter(operation="point_download").exists()


def test_an_archived_point_is_not_downloaded_before_rehydration(
    operator: Any, point: RecoveryPoint
) -> None:
    RecoveryPoint.objects.filter(pk=point.pk).update(tier="vault_archive")
    response = _client(operator).post(_download(point), {"path": "notes.txt"})
    assert response.status_code == 409
    assert "rehydrate it first" in response.content.decode()


def test_a_selection_with_a_path_not_in_the_point_restores_nothing(
    operator: Any, point: RecoveryPoint, stores: dict[str, Path]
) -> None:
    response = _client(operator).post(
        _restore(point),
        {"path": ["notes.txt", "not-there.txt"], "root": str(stores["restores"]), "folder": ""},
    )
    job = runner.job_run(job_id=Job.objects.get(kind="restore").pk)
    assert response.status_code == 302 and job is not None
    assert job.status == "failed" and "not in this recovery point" in job.error
    assert list(stores["restores"].iterdir()) == []


def test_a_link_alone_is_not_downloaded(operator: Any, admin: Any, stores: dict[str, Path]) -> None:
    (stores["source"] / "link").symlink_to("notes.txt")
    linked = backed_up(admin, protect(admin, stores["source"], vault_name="vault-links"))
    response = _client(operator).post(_download(linked), {"path": "link"})
    assert response.status_code == 400
    assert "links are not downloaded" in response.content.decode()


def test_rehydration_is_asked_from_the_restore_page_and_a_reader_is_refused(
    operator: Any, reader: Any, point: RecoveryPoint
) -> None:
    RecoveryPoint.objects.filter(pk=point.pk).update(tier="vault_archive")
    url = reverse("jobs:rehydrate", args=[point.pk])
    refused = _client(reader).post(url, {"days": 15, "priority": "standard"})
    assert refused.status_code == 403
    assert AuditRecord.objects.get(operation="point_rehydrate").code == "permission_denied"
    client = _client(operator)
    bad = client.post(url, {"days": 90, "priority": "standard"})
    assert bad.status_code == 400 and "less than or equal to 30" in bad.content.decode()
    response = client.post(url, {"days": 20, "priority": "high"})
    job = Job.objects.get(kind="rehydrate")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.params == {"days": 20, "priority": "high"} and job.requested_by == operator
