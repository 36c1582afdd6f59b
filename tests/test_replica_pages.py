"""The Replication blade (SPEC 3.10, 7): pair, status and lag, stop replicating; refusals
shown where the person acted; readers and forged posts change nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from guards import services as guard_services
from portal.models import AuditRecord
from tests.factories import lock_vault, make_vault
from vaults import services
from vaults.models import Vault

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def two(admin: Any) -> dict[str, Vault]:
    return {
        "src": make_vault(admin, name="src", region="westeurope"),
        "rep": make_vault(admin, name="rep", region="northeurope"),
        "near": make_vault(admin, name="near", region="westeurope"),
    }


def test_the_blade_offers_only_vaults_that_can_be_replicas(
    admin: Any, two: dict[str, Vault]
) -> None:
    page = client_for(admin).get("/vaults/src/replication/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Not replicated" in html and 'id="pair-replica"' in html
    assert "rep (northeurope" in html
    assert "near (westeurope" not in html  # same region: not offered


def test_pairing_on_the_page_then_stopping_it(admin: Any, two: dict[str, Vault]) -> None:
    client = client_for(admin)
    done = client.post("/vaults/src/replication/pair/", {"replica": "rep"}, headers=HTMX)
    assert done.status_code == 200
    html = done.content.decode()
    assert "now replicates to rep" in html and "Replicating" in html and "Up to date" in html
    assert Vault.objects.get(name="src").replica == two["rep"]
    record = AuditRecord.objects.filter(operation="replica_set", outcome="allowed").get()
    assert record.source == "web"
    # The replica's page says whose replica it is.
    assert "This vault is the replica of" in client.get("/vaults/rep/replication/").content.decode()
    # Stopping asks for the vault's name.
    wrong = client.post("/vaults/src/replication/remove/", {"confirmation": "nope"}, headers=HTMX)
    assert wrong.status_code == 409 and "Type the vault" in wrong.content.decode()
    assert Vault.objects.get(name="src").replica_id is not None
    stopped = client.post("/vaults/src/replication/remove/", {"confirmation": "src"})
    assert stopped.status_code == 302
    assert Vault.objects.get(name="src").replica_id is None


def test_a_forged_post_naming_a_vault_not_offered_is_refused_in_place(
    admin: Any, two: dict[str, Vault]
) -> None:
    client = client_for(admin)
    for name, words in (("near", "region westeurope"), ("src", "its own replica")):
        refused = client.post("/vaults/src/replication/pair/", {"replica": name}, headers=HTMX)
        assert refused.status_code == 400, name
        assert words in refused.content.decode() and 'id="pair-error"' in refused.content.decode()
    unknown = client.post("/vaults/src/replication/pair/", {"replica": "ghost"}, headers=HTMX)
    assert unknown.status_code == 400
    assert Vault.objects.get(name="src").replica_id is None


def test_readers_and_operators_see_no_controls_and_are_refused(
    admin: Any, reader: Any, operator: Any, two: dict[str, Vault]
) -> None:
    for user in (reader, operator):
        client = client_for(user)
        page = client.get("/vaults/src/replication/").content.decode()
        assert 'id="pair-replica"' not in page
        refused = client.post("/vaults/src/replication/pair/", {"replica": "rep"}, headers=HTMX)
        assert refused.status_code == 403
    assert Vault.objects.get(name="src").replica_id is None
    services.replica_set(actor=admin, vault=two["src"], replica=two["rep"])
    for user in (reader, operator):
        refused = client_for(user).post("/vaults/src/replication/remove/", {"confirmation": "src"})
        assert refused.status_code == 403
    assert Vault.objects.get(name="src").replica_id == two["rep"].pk


def test_a_locked_pairing_says_it_stays_and_refuses_a_forged_removal(
    admin: Any, two: dict[str, Vault]
) -> None:
    services.replica_set(actor=admin, vault=two["src"], replica=two["rep"])
    # The lock request and the approvals inbox say both are locked.
    client = client_for(admin)
    page = client.get("/vaults/src/immutability/").content.decode()
    assert 'id="lock-replica-note"' in page and "locks both" in page
    services.immutability_lock_request(actor=admin, vault=two["src"], confirmation="src")
    inbox = client.get("/approvals/").content.decode()
    assert "Locks its replica rep too" in inbox
    lock_vault(Vault.objects.get(name="src"), requester=admin)
    page = client.get("/vaults/src/replication/").content.decode()
    assert 'id="unpair-locked"' in page and 'id="stop-replication"' not in page
    refused = client.post("/vaults/src/replication/remove/", {"confirmation": "src"}, headers=HTMX)
    assert refused.status_code == 409
    assert "cannot be removed by anyone" in refused.content.decode()
    assert Vault.objects.get(name="src").replica_id == two["rep"].pk


def test_stop_replication_shows_its_guard(
    admin: Any, security_admin: Any, two: dict[str, Vault]
) -> None:
    guard = guard_services.guard_create(actor=security_admin, name="g-rep")
    services.replica_set(actor=admin, vault=two["src"], replica=two["rep"])
    services.vault_guard_set(actor=admin, vault=Vault.objects.get(name="src"), guard=guard)
    client = client_for(admin)
    page = client.get("/vaults/src/replication/").content.decode()
    assert "Protected by" in page and "g-rep" in page
    refused = client.post("/vaults/src/replication/remove/", {"confirmation": "src"}, headers=HTMX)
    assert refused.status_code == 409
    assert "Request access on Resource Guard g-rep" in refused.content.decode()
    assert Vault.objects.get(name="src").replica_id is not None


def test_the_restore_page_names_both_copies_and_their_regions(
    admin: Any, operator: Any, two: dict[str, Vault], tmp_path: Any
) -> None:
    from policies import services as policy_services

    services.replica_set(actor=admin, vault=two["src"], replica=two["rep"])
    policy = policy_services.policy_create(actor=admin, vault=two["src"], name="p", daily_days=30)
    item = services.item_protect(
        actor=admin, vault=two["src"], name="files", source_path=str(tmp_path), policy=policy
    )
    point = services.point_record(item=item)
    copy = services.replica_point_record(
        replica=two["rep"], source_point=point, stored_bytes=0, digest=""
    )
    client = client_for(operator)
    for shown, other in ((point, copy), (copy, point)):
        page = client.get(f"/jobs/points/{shown.pk}/restore/").content.decode()
        assert "Copies of this recovery point" in page
        assert "region <strong>westeurope</strong>" in page
        assert "region <strong>northeurope</strong>" in page
        assert f'href="/jobs/points/{other.pk}/restore/" id="restore-other-copy"' in page
    # A point of an unpaired vault shows no such section.
    lone = make_vault(admin, name="lone", region="eastus")
    policy = policy_services.policy_create(actor=admin, vault=lone, name="p", daily_days=30)
    lone_item = services.item_protect(
        actor=admin, vault=lone, name="files", source_path=str(tmp_path), policy=policy
    )
    lone_point = services.point_record(item=lone_item)
    page = client.get(f"/jobs/points/{lone_point.pk}/restore/").content.decode()
    assert "Copies of this recovery point" not in page


def test_the_portfolio_shows_the_pairing_and_lag_and_filters_on_it(
    admin: Any, two: dict[str, Vault], tmp_path: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from policies import services as policy_services
    from tests.conftest import api_client_for

    services.replica_set(actor=admin, vault=two["src"], replica=two["rep"])
    client = client_for(admin)
    page = client.get("/").content.decode()
    assert "Replication" in page and "Up to date" in page and "Replica</span> of" in page
    # A point not copied yet: the source lags.
    policy = policy_services.policy_create(actor=admin, vault=two["src"], name="p", daily_days=30)
    item = services.item_protect(
        actor=admin, vault=two["src"], name="files", source_path=str(tmp_path), policy=policy
    )
    point = services.point_record(item=item)
    from vaults.models import RecoveryPoint

    RecoveryPoint.objects.filter(pk=point.pk).update(storage_key="rp-x")
    lagging = client.get("/?replication=lagging").content.decode()
    assert 'badge warn">Lag' in lagging and ">src</a>" in lagging and ">near</a>" not in lagging
    assert ">src</a>" not in client.get("/?replication=up_to_date").content.decode()
    assert ">near</a>" in client.get("/?replication=none").content.decode()
    # The API filters the same way and says the lag in seconds.
    api = api_client_for(admin)
    names = [v["name"] for v in api.get("/api/v1/vaults/?replication=lagging").json()["results"]]
    assert names == ["src"]
    body = api.get("/api/v1/vaults/src/").json()
    assert body["replica"]["vault"] == "rep" and body["replica"]["lag_seconds"] >= 0
    assert api.get("/api/v1/vaults/?replication=replica").json()["results"][0]["name"] == "rep"
    # The column costs no query per row.
    for n in range(5):
        make_vault(admin, name=f"extra-{n}", region="eastus")
    with CaptureQueriesContext(connection) as few:
        client.get("/")
    for n in range(5, 15):
        make_vault(admin, name=f"extra-{n}", region="eastus")
    with CaptureQueriesContext(connection) as many:
        client.get("/")
    assert len(many) == len(few)


def test_hostile_values_are_refused_without_a_server_error(
    admin: Any, two: dict[str, Vault]
) -> None:
    client = client_for(admin)
    for value in ("\x00", "rep\x00", "x" * 5000, "../rep", ""):
        answer = client.post("/vaults/src/replication/pair/", {"replica": value}, headers=HTMX)
        assert answer.status_code == 400, (value, answer.status_code)
    from tests.conftest import api_client_for

    api = api_client_for(admin)
    for body in (
        {"vault": "\x00"},
        {"vault": ["rep"]},
        {"vault": {"a": 1}},
        {"vault": "x" * 5000},
    ):
        answer = api.put("/api/v1/vaults/src/replica/", body, format="json")
        assert answer.status_code == 400, (body, answer.status_code)
    assert Vault.objects.get(name="src").replica_id is None
    # A lone surrogate, as raw JSON (the test client would not encode it).
    raw = api.generic(
        "PUT", "/api/v1/vaults/src/replica/", '{"vault": "\\ud800"}', "application/json"
    )
    assert raw.status_code == 400
    assert Vault.objects.get(name="src").replica_id is None
