"""The API contract of SPEC section 5 for tokens, vaults, immutability, lock, approvals, audit."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from portal.models import Approval, AuditRecord
from tests.conftest import PASSWORD
from tests.factories import make_vault
from vaults.models import Vault

pytestmark = pytest.mark.django_db


def test_token_then_authenticated_calls(admin: Any) -> None:
    client = APIClient()
    response = client.post(
        "/api/v1/auth/token/", {"username": "alice", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 200
    token = response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/vaults/").status_code == 200


def test_bad_credentials_are_a_validation_error(admin: Any) -> None:
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "alice", "password": "x"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_anonymous_gets_401_with_a_code() -> None:
    response = APIClient().get("/api/v1/vaults/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_create_vault_answers_201_with_the_vault_shape(admin: Any, api: Any) -> None:
    response = api(admin).post(
        "/api/v1/vaults/",
        {"name": "new-vault", "kind": "backup", "region": "eastus", "tags": {"env": "dev"}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "new-vault"
    assert body["kind"] == "backup"
    assert body["tags"] == {"env": "dev"}
    assert body["immutability"]["state"] == "disabled"
    assert body["soft_delete"] == {"state": "enabled", "retention_days": 14}
    assert body["resource_guard"] is None
    assert body["security_level"] == "fair"
    assert "created_at" in body


def test_duplicate_vault_name_is_400_naming_the_field(admin: Any, api: Any) -> None:
    make_vault(admin, name="taken")
    response = api(admin).post(
        "/api/v1/vaults/", {"name": "taken", "kind": "backup", "region": "eastus"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert response.json()["field"] == "name"
    assert "name" in response.json()["detail"]
    assert Vault.objects.filter(name="taken").count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "v1", "kind": "cold", "region": "eastus"}, "kind"),
        ({"name": "v1", "kind": "backup"}, "region"),
        ({"name": "1-bad name", "kind": "backup", "region": "eastus"}, "name"),
        ({"kind": "backup", "region": "eastus"}, "name"),
    ],
)
def test_invalid_vault_input_is_400_and_creates_nothing(
    admin: Any, api: Any, body: dict, field: str
) -> None:
    response = api(admin).post("/api/v1/vaults/", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert response.json()["field"] == field
    assert not Vault.objects.exists()


def test_unknown_vault_is_404(admin: Any, api: Any) -> None:
    client = api(admin)
    assert client.get("/api/v1/vaults/nope/").status_code == 404
    assert client.get("/api/v1/vaults/nope/").json()["code"] == "not_found"
    response = client.post("/api/v1/vaults/nope/immutability/", {"state": "enabled"}, format="json")
    assert response.status_code == 404


def test_invalid_state_is_400(admin: Any, api: Any, vault: Vault) -> None:
    response = api(admin).post(
        f"/api/v1/vaults/{vault.name}/immutability/", {"state": "frozen"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert response.json()["field"] == "state"


def test_lock_answers_202_with_the_pending_approval(admin: Any, api: Any, vault: Vault) -> None:
    response = api(admin).post(
        f"/api/v1/vaults/{vault.name}/immutability/lock/",
        {"confirmation": vault.name},
        format="json",
    )
    assert response.status_code == 202
    body = response.json()
    assert body["kind"] == "lock_immutability"
    assert body["status"] == "pending"
    assert body["requested_by"] == "alice"
    assert body["decided_by"] is None
    assert body["vault"] == vault.name
    assert body["expires_at"]


def test_wrong_confirmation_is_409_and_nothing_created(admin: Any, api: Any, vault: Vault) -> None:
    response = api(admin).post(
        f"/api/v1/vaults/{vault.name}/immutability/lock/",
        {"confirmation": "vault-on"},
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["code"] == "confirmation_mismatch"
    assert not Approval.objects.exists()


def test_approval_flow_through_the_api(
    admin: Any, security_admin: Any, api: Any, vault: Vault
) -> None:
    approval_id = (
        api(admin)
        .post(
            f"/api/v1/vaults/{vault.name}/immutability/lock/",
            {"confirmation": vault.name},
            format="json",
        )
        .json()["id"]
    )
    inbox = api(security_admin).get("/api/v1/approvals/?status=pending").json()
    assert inbox["count"] == 1 and inbox["results"][0]["id"] == approval_id
    own = api(admin).post(f"/api/v1/approvals/{approval_id}/approve/")
    assert own.status_code == 403  # a backup admin holds no approve permission at all
    response = api(security_admin).post(f"/api/v1/approvals/{approval_id}/approve/")
    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    assert response.json()["decided_by"] == "sam"
    again = api(security_admin).post(f"/api/v1/approvals/{approval_id}/deny/")
    assert (again.status_code, again.json()["code"]) == (409, "approval_not_pending")
    assert api(admin).get(f"/api/v1/vaults/{vault.name}/").json()["immutability"]["state"] == (
        "locked"
    )
    assert api(admin).get(f"/api/v1/vaults/{vault.name}/").json()["data_lock"] == "Locked"


def test_cancel_through_the_api(admin: Any, api: Any, vault: Vault) -> None:
    approval_id = (
        api(admin)
        .post(
            f"/api/v1/vaults/{vault.name}/immutability/lock/",
            {"confirmation": vault.name},
            format="json",
        )
        .json()["id"]
    )
    response = api(admin).post(f"/api/v1/approvals/{approval_id}/cancel/")
    assert response.json()["status"] == "cancelled"
    assert api(admin).get("/api/v1/approvals/?status=cancelled").json()["count"] == 1


def test_list_filters_and_pagination_shape(admin: Any, api: Any) -> None:
    make_vault(admin, name="a-rs", kind="recovery_services", region="eastus")
    make_vault(admin, name="b-bk", kind="backup", region="westeurope", immutability="enabled")
    make_vault(admin, name="c-bk", kind="backup", region="eastus", immutability="locked")
    client = api(admin)

    def names(query: str) -> list[str]:
        body = client.get(f"/api/v1/vaults/{query}").json()
        assert set(body) >= {"count", "next", "previous", "results"}
        return [v["name"] for v in body["results"]]

    assert names("") == ["a-rs", "b-bk", "c-bk"]
    assert names("?immutability=locked") == ["c-bk"]
    assert names("?immutability=enabled") == ["b-bk"]
    assert names("?kind=backup") == ["b-bk", "c-bk"]
    assert names("?region=eastus&kind=backup") == ["c-bk"]
    assert names("?search=bk") == ["b-bk", "c-bk"]
    assert names("?mua=true") == []
    assert names("?soft_delete=enabled") == ["a-rs", "b-bk", "c-bk"]
    bad = client.get("/api/v1/vaults/?immutability=frozen")
    assert bad.status_code == 400 and bad.json()["code"] == "validation_error"


def test_delete_vault(admin: Any, api: Any, vault: Vault) -> None:
    assert api(admin).delete(f"/api/v1/vaults/{vault.name}/").status_code == 204
    assert not Vault.objects.exists()
    record = AuditRecord.objects.first()
    assert (record.operation, record.outcome, record.vault_name) == (
        "vault_delete",
        "allowed",
        "vault-one",
    )


def test_audit_endpoint_filters(admin: Any, api: Any, vault: Vault) -> None:
    client = api(admin)
    client.post(
        f"/api/v1/vaults/{vault.name}/immutability/lock/", {"confirmation": "x"}, format="json"
    )
    refused = client.get(f"/api/v1/audit/?vault={vault.name}&outcome=refused").json()
    assert refused["count"] == 1
    assert refused["results"][0]["code"] == "confirmation_mismatch"
    allowed = client.get("/api/v1/audit/?operation=vault_create&outcome=allowed").json()
    assert allowed["count"] == 1


def test_schema_and_docs_are_served(admin: Any, client: Any) -> None:
    assert client.get("/api/schema/").status_code == 200
    client.force_login(admin)
    assert client.get("/api/docs/").status_code == 200


READER_WRITES = [
    ("post", "/api/v1/vaults/", {"name": "r-vault", "kind": "backup", "region": "eastus"}),
    ("delete", "/api/v1/vaults/vault-one/", None),
    ("post", "/api/v1/vaults/vault-one/immutability/", {"state": "enabled"}),
    ("post", "/api/v1/vaults/vault-one/immutability/lock/", {"confirmation": "vault-one"}),
]


@pytest.mark.parametrize(("method", "path", "body"), READER_WRITES)
@pytest.mark.parametrize("role", ["reader", "operator", "security_admin"])
def test_non_admins_get_403_on_vault_writes(
    admin: Any, api: Any, vault: Vault, role: str, method: str, path: str, body: Any
) -> None:
    from tests.conftest import make_user

    user = make_user(f"{role}-user", role)
    response = getattr(api(user), method)(path, body, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    vault.refresh_from_db()
    assert vault.immutability == "disabled"
    assert Vault.objects.count() == 1
    assert (
        AuditRecord.objects.filter(actor=user, outcome="refused", code="permission_denied").count()
        == 1
    )


@pytest.mark.parametrize("action", ["approve", "deny", "cancel", "revoke"])
def test_reader_gets_403_on_approval_actions(
    admin: Any, reader: Any, api: Any, vault: Vault, action: str
) -> None:
    approval_id = (
        api(admin)
        .post(
            f"/api/v1/vaults/{vault.name}/immutability/lock/",
            {"confirmation": vault.name},
            format="json",
        )
        .json()["id"]
    )
    response = api(reader).post(f"/api/v1/approvals/{approval_id}/{action}/")
    assert response.status_code == 403
    assert Approval.objects.get(pk=approval_id).status == "pending"
