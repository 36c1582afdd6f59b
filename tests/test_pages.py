"""The dashboard: login everywhere, the vault pages and blades, approvals, audit and users."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.test import Client

from portal.models import Approval, AuditRecord
from tests.factories import make_vault
from vaults.models import Vault

pytestmark = pytest.mark.django_db

PAGES = [
    "/",
    "/vaults/",
    "/vaults/new/",
    "/vaults/vault-one/",
    "/vaults/vault-one/immutability/",
    "/approvals/",
    "/audit/",
    "/users/",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_a_login(vault: Vault, path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_healthz_needs_no_login(db: None) -> None:
    assert Client().get("/healthz/").content == b"ok"


def test_login_page_and_sign_in(admin: Any) -> None:
    client = Client()
    assert client.get("/accounts/login/").status_code == 200
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "correct-horse-battery-staple"}
    )
    assert response.status_code == 302
    assert client.get("/vaults/").status_code == 200


def test_vault_list_shows_states_as_text_and_filters(admin: Any, client: Client) -> None:
    make_vault(admin, name="plain")
    make_vault(admin, name="sealed", immutability="locked")
    client.force_login(admin)
    page = client.get("/vaults/").content.decode()
    assert "plain" in page and "sealed" in page and "Locked" in page
    filtered = client.get("/vaults/?immutability=locked").content.decode()
    assert "sealed" in filtered and ">plain<" not in filtered
    partial = client.get("/vaults/?immutability=locked", headers={"HX-Request": "true"})
    assert b"<html" not in partial.content and b"sealed" in partial.content


def test_create_vault_from_the_page(admin: Any, client: Client) -> None:
    client.force_login(admin)
    response = client.post(
        "/vaults/new/",
        {"name": "web-vault", "kind": "backup", "region": "eastus", "tags": "env=prod, team=a"},
    )
    assert response.status_code == 302
    vault = Vault.objects.get(name="web-vault")
    assert vault.tags == {"env": "prod", "team": "a"}
    assert AuditRecord.objects.filter(operation="vault_create", source="web").count() == 1


def test_duplicate_vault_on_the_page_is_a_form_error(
    admin: Any, client: Client, vault: Vault
) -> None:
    client.force_login(admin)
    response = client.post(
        "/vaults/new/", {"name": vault.name, "kind": "backup", "region": "eastus"}
    )
    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    assert Vault.objects.count() == 1


@pytest.mark.parametrize(
    "blade",
    ["overview", "properties", "immutability", "security", "mua", "policies", "items", "jobs"],
)
def test_every_blade_renders(admin: Any, client: Client, vault: Vault, blade: str) -> None:
    client.force_login(admin)
    response = client.get(f"/vaults/{vault.name}/{blade}/")
    assert response.status_code == 200
    assert vault.name in response.content.decode()


def test_properties_blade_lists_the_properties(admin: Any, client: Client) -> None:
    make_vault(admin, name="props", tags={"env": "prod"})
    client.force_login(admin)
    page = client.get("/vaults/props/properties/").content.decode()
    for text in [
        "Recovery Services vault",
        "westeurope",
        "env=prod",
        "Storage location",
        "Created",
        "Protected items",
        "recovery points",
    ]:
        assert text in page


def test_immutability_blade_updates_in_place_with_htmx(
    admin: Any, client: Client, vault: Vault
) -> None:
    client.force_login(admin)
    response = client.post(
        f"/vaults/{vault.name}/immutability/change/",
        {"state": "enabled"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="immutability-blade">')
    assert 'hx-swap-oob="true"' in body
    assert "Disable immutability" in body
    vault.refresh_from_db()
    assert vault.immutability == "enabled"


def test_immutability_blade_works_without_javascript(
    admin: Any, client: Client, vault: Vault
) -> None:
    client.force_login(admin)
    response = client.post(f"/vaults/{vault.name}/immutability/change/", {"state": "enabled"})
    assert response.status_code == 302
    assert response["Location"] == f"/vaults/{vault.name}/immutability/"


def test_lock_flow_on_the_page(admin: Any, security_admin: Any, vault: Vault) -> None:
    requester, approver = Client(), Client()
    requester.force_login(admin)
    approver.force_login(security_admin)
    wrong = requester.post(
        f"/vaults/{vault.name}/immutability/lock/",
        {"confirmation": "wrong"},
        headers={"HX-Request": "true"},
    )
    assert wrong.status_code == 409
    assert "Type the vault" in wrong.content.decode()
    assert not Approval.objects.exists()
    requester.post(f"/vaults/{vault.name}/immutability/lock/", {"confirmation": vault.name})
    blade = requester.get(f"/vaults/{vault.name}/immutability/").content.decode()
    assert "waiting for a security admin" in blade
    approval = Approval.objects.get()
    inbox = approver.get("/approvals/").content.decode()
    assert f"Review and approve request {approval.pk}" in inbox
    detail = approver.get(f"/approvals/{approval.pk}/").content.decode()
    assert f"Approve request {approval.pk}" in detail
    approver.post(f"/approvals/{approval.pk}/approve/", {"confirmation": vault.name})
    vault.refresh_from_db()
    assert vault.is_locked
    assert (
        "can never be disabled"
        in requester.get(f"/vaults/{vault.name}/immutability/").content.decode()
    )


def test_refusal_is_shown_where_the_person_acted(admin: Any, client: Client) -> None:
    locked = make_vault(admin, name="locked-one", immutability="locked")
    client.force_login(admin)
    response = client.post(
        f"/vaults/{locked.name}/immutability/change/",
        {"state": "disabled"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 409
    assert "cannot be changed by anyone" in response.content.decode()


def test_pending_count_in_the_navigation(
    admin: Any, security_admin: Any, client: Client, vault: Vault
) -> None:
    from vaults import services

    services.immutability_lock_request(actor=admin, vault=vault, confirmation=vault.name)
    client.force_login(security_admin)
    assert 'aria-label="1 pending"' in client.get("/vaults/").content.decode()


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/vaults/new/", {"name": "r", "kind": "backup", "region": "x"}),
        ("/vaults/vault-one/immutability/change/", {"state": "enabled"}),
        ("/vaults/vault-one/immutability/lock/", {"confirmation": "vault-one"}),
        ("/vaults/vault-one/delete/", {"confirmation": "vault-one"}),
    ],
)
def test_reader_changes_nothing_from_the_pages(
    reader: Any, vault: Vault, path: str, data: dict
) -> None:
    client = Client()
    client.force_login(reader)
    client.post(path, data)
    vault.refresh_from_db()
    assert vault.immutability == "disabled"
    assert Vault.objects.count() == 1
    assert not Approval.objects.exists()
    assert AuditRecord.objects.filter(actor=reader, code="permission_denied").count() == 1


def test_reader_sees_no_action_controls(reader: Any, vault: Vault) -> None:
    client = Client()
    client.force_login(reader)
    page = client.get(f"/vaults/{vault.name}/immutability/").content.decode()
    assert "Enable immutability" not in page and "Request lock" not in page
    assert "Create vault" not in client.get("/vaults/").content.decode()


def test_delete_vault_from_the_page_needs_the_typed_name(
    admin: Any, client: Client, vault: Vault
) -> None:
    client.force_login(admin)
    client.post(f"/vaults/{vault.name}/delete/", {"confirmation": "nope"})
    assert Vault.objects.exists()
    client.post(f"/vaults/{vault.name}/delete/", {"confirmation": vault.name})
    assert not Vault.objects.exists()


def test_audit_page_filters_and_csv(admin: Any, client: Client, vault: Vault) -> None:
    make_vault(admin, name="other")
    client.force_login(admin)
    client.post(f"/vaults/{vault.name}/immutability/lock/", {"confirmation": "x"})
    page = client.get(f"/audit/?vault={vault.name}&outcome=refused").content.decode()
    assert "confirmation_mismatch" in page
    response = client.get(f"/audit/?vault={vault.name}&format=csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["at", "actor_name", "operation"]
    assert {row[5] for row in rows[1:]} == {vault.name}
    assert len(rows) - 1 == AuditRecord.objects.filter(vault_name=vault.name).count()
    by_actor = client.get("/audit/?actor=alice&format=csv")
    assert len(list(csv.reader(io.StringIO(b"".join(by_actor.streaming_content).decode())))) > 2


def test_users_page_is_for_superusers(admin: Any, superuser: Any) -> None:
    client = Client()
    client.force_login(admin)
    assert client.get("/users/").status_code == 403
    client.force_login(superuser)
    assert client.get("/users/").status_code == 200
    response = client.post(
        "/users/", {"username": "newbie", "role": "reader", "password": "a-long-enough-passphrase"}
    )
    assert response.status_code == 302
    from django.contrib.auth import get_user_model

    newbie = get_user_model().objects.get(username="newbie")
    assert [g.name for g in newbie.groups.all()] == ["reader"]
    client.post(f"/users/{newbie.pk}/", {"role": "operator"})
    newbie.refresh_from_db()
    assert [g.name for g in newbie.groups.all()] == ["operator"]
    assert not newbie.is_active


def test_jobs_blade_lists_the_vaults_jobs_with_live_progress(
    admin: Any, reader: Any, tmp_path: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from policies import services as policy_services
    from vaults import services as vault_services
    from vaults.jobs import requests

    vault = make_vault(admin, name="busy")
    policy = policy_services.policy_create(actor=admin, vault=vault, name="p", daily_days=7)
    item = vault_services.item_protect(
        actor=admin, vault=vault, name="docs", source_path=str(tmp_path), policy=policy
    )
    job = requests.backup_request(actor=admin, item=item)
    client = Client()
    client.force_login(admin)
    page = client.get("/vaults/busy/jobs/").content.decode()
    assert f"#{job.pk}" in page and f"/jobs/{job.pk}/progress/" in page
    assert f"/jobs/items/{item.pk}/backup/" in page
    with CaptureQueriesContext(connection) as one:
        client.get("/vaults/busy/jobs/")
    for _ in range(5):
        requests.backup_request(actor=admin, item=item)
    with CaptureQueriesContext(connection) as six:
        client.get("/vaults/busy/jobs/")
    assert len(six) == len(one), "no query per row"
    client.force_login(reader)
    assert "/backup/" not in client.get("/vaults/busy/jobs/").content.decode()
