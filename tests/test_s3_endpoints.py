"""Named S3 endpoints (SPEC 3.10, docs/replicas.md): a location written
``s3://<endpoint>@bucket/prefix`` lives on the endpoint configured under that name in
``HOLDFAST_S3_ENDPOINTS``, so a replica can sit on a second S3 server; ``s3://bucket/prefix``
stays on the default endpoint. Two moto servers on loopback play the two regions' servers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import DatabaseError, transaction
from django.test import Client

from portal.gate import DomainError
from tests.conftest import api_client_for
from tests.factories import make_vault, stored_digest
from tests.s3server import S3Server, running_moto
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
from tests.test_replicas import copies_done, the_copy
from vaults import locations
from vaults import services as vault_services
from vaults.jobs import requests
from vaults.models import Vault
from vaults.services.replication import pairing_refusal
from vaults.storage.errors import StorageError
from vaults.storage.s3_client import S3Location, parse_location


@pytest.fixture(scope="session")
def dr_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A second S3 server: another region's endpoint."""
    with running_moto(tmp_path_factory.mktemp("moto-dr")) as server:
        yield server


@pytest.fixture
def dr(dr_server: S3Server, moto_s3: S3Server, settings: Any) -> S3Server:
    """The default endpoint is moto (`moto_s3`); the second server is named ``dr``."""
    settings.HOLDFAST_S3_ENDPOINTS = {
        "dr": {
            "endpoint_url": dr_server.endpoint,
            "region": "eu-north-1",
            "access_key_id": dr_server.access_key,
            "secret_access_key": dr_server.secret_key,
        }
    }
    return dr_server


def test_locations_parse_and_format_round_trip_with_and_without_an_endpoint() -> None:
    for text, parsed in (
        ("s3://bucket", S3Location("bucket", "")),
        ("s3://bucket/a/b", S3Location("bucket", "a/b")),
        ("s3://dr@bucket", S3Location("bucket", "", "dr")),
        ("s3://dr-2_x@bucket/a/b", S3Location("bucket", "a/b", "dr-2_x")),
    ):
        assert parse_location(text) == parsed
        assert str(parsed) == text
        assert parse_location(str(parsed)) == parsed
    assert parse_location("s3://dr@bucket/v").child("standard") == S3Location(
        "bucket", "v/standard", "dr"
    )
    for bad in ("s3://@bucket/p", "s3://DR@bucket/p", "s3://a@b@bucket/p", "s3://dr@/p"):
        with pytest.raises(StorageError):
            parse_location(bad)


def test_an_unknown_endpoint_is_refused_naming_the_known_ones(
    dr: S3Server,
    people: dict[str, Any],  # noqa: F811
) -> None:
    admin = people["admin"]
    with pytest.raises(DomainError) as refused:
        make_vault(admin, name="lost", storage_location="s3://nowhere@bucket/v")
    assert refused.value.code == "validation_error"
    assert refused.value.field == "storage_location"
    assert "no S3 endpoint named 'nowhere'" in refused.value.detail
    assert "the known endpoints are dr" in refused.value.detail
    answer = api_client_for(admin).post(
        "/api/v1/vaults/",
        {
            "name": "lost",
            "kind": "backup",
            "region": "westeurope",
            "storage_location": "s3://nowhere@bucket/v",
        },
    )
    assert answer.status_code == 400, answer.json()
    assert answer.json()["field"] == "storage_location"
    assert "dr" in answer.json()["detail"]
    page = Client()
    page.force_login(admin)
    answer = page.post(
        "/vaults/new/",
        {
            "name": "lost",
            "kind": "backup",
            "region": "westeurope",
            "storage_location": "s3://nowhere@bucket/v",
        },
    )
    assert answer.status_code == 400
    assert "the known endpoints are dr" in answer.content.decode()
    assert not Vault.objects.filter(name="lost").exists()
    with pytest.raises(StorageError, match="known endpoints are dr"):
        locations.s3_client("nowhere")


def test_the_same_bucket_and_prefix_on_two_endpoints_are_two_locations(
    dr: S3Server,
    moto_s3: S3Server,
    people: dict[str, Any],  # noqa: F811
) -> None:
    admin = people["admin"]
    bucket = moto_s3.bucket()
    dr.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    here = make_vault(admin, name="here", storage_location=f"s3://{bucket}/v")
    there = make_vault(admin, name="there", region="swedencentral",
                       storage_location=f"s3://dr@{bucket}/v")  # fmt: skip
    # Each endpoint keeps its own: the same endpoint, bucket and prefix is refused.
    for taken in (f"s3://dr@{bucket}/v", f"s3://dr@{bucket}/v/inner", f"s3://{bucket}/v/x"):
        with pytest.raises(DomainError) as refused:
            make_vault(admin, name="again", storage_location=taken)
        assert refused.value.field == "storage_location"
        assert "overlaps the storage of vault" in refused.value.detail
    # ... by the database too, whatever the caller.
    with pytest.raises(DatabaseError), transaction.atomic():
        Vault.objects.create(name="raw", kind="backup", region="x",
                             storage_location=f"s3://dr@{bucket}/v/raw")  # fmt: skip
    # A sibling prefix is still apart, on either endpoint.
    make_vault(admin, name="sibling", storage_location=f"s3://{bucket}/v2")
    make_vault(admin, name="sibling-dr", storage_location=f"s3://dr@{bucket}/v2")
    # Pairing: the same bucket/prefix on another endpoint is other storage.
    assert pairing_refusal(here, there) is None
    same = Vault(pk=10**6, name="same", kind=here.kind, region="swedencentral",
                 storage_location=f"s3://{bucket}/v/same")  # fmt: skip
    refusal = pairing_refusal(here, same)
    assert refusal is not None and "overlaps" in refusal.detail


def test_a_replica_on_a_second_endpoint_gets_the_copy_and_restores_byte_for_byte(
    dr: S3Server,
    moto_s3: S3Server,
    people: dict[str, Any],  # noqa: F811
    storage: Path,  # noqa: F811
    worker: Any,  # noqa: F811
) -> None:
    admin, operator = people["admin"], people["operator"]
    source_bucket, replica_bucket = moto_s3.bucket(), f"dr-{moto_s3.bucket()}"
    dr.client().create_bucket(Bucket=replica_bucket, ObjectLockEnabledForBucket=True)
    source = make_vault(admin, name="src", region="westeurope",
                        storage_location=f"s3://{source_bucket}/src")  # fmt: skip
    replica = make_vault(admin, name="rep", region="swedencentral",
                         storage_location=f"s3://dr@{replica_bucket}/rep")  # fmt: skip
    vault_services.replica_set(actor=admin, vault=source, replica=replica)
    item = protect(admin, source, write_tree(storage / "data"), "docs")

    point = backup_now(item, operator)
    (copy_job,) = copies_done(source)
    assert copy_job.status == "completed", copy_job.error
    copy = the_copy(point)
    assert copy.vault == replica and copy.digest == stored_digest(copy)

    # The copy is on the second server, asked directly; the default server has no such bucket.
    keys = [
        entry["Key"]
        for entry in dr.client().list_objects_v2(Bucket=replica_bucket).get("Contents", [])
    ]
    assert any(key.startswith("rep/standard/chunks/") for key in keys), keys
    assert any(copy.storage_key in key for key in keys), keys
    buckets = {entry["Name"] for entry in moto_s3.client().list_buckets()["Buckets"]}
    assert replica_bucket not in buckets

    target = storage / "restores" / "from-dr"
    job = requests.restore_request(actor=operator, point=copy, target_path=str(target))
    (done,) = wait_for(job.pk)
    assert done.status == "completed", done.error
    assert tree_of(target) == tree_of(storage / "data")
    assert locations.vault_store(replica).verify(copy.storage_key).ok


@pytest.mark.parametrize(
    "value",
    ['{"DR": {}}', '{"dr": {"endpoint": "http://x"}}', '{"dr": {"region": 1}}', '["dr"]', "{dr"],
)
def test_a_malformed_endpoints_setting_stops_the_start_with_a_sentence(value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import portal.settings"],
        env={**os.environ, "HOLDFAST_S3_ENDPOINTS": value},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "RuntimeError: HOLDFAST_S3_ENDPOINTS" in done.stderr
