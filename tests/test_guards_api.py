"""The Resource Guard, vault association and access request endpoints (SPEC 5)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.factories import make_vault
from vaults.models import Vault

pytestmark = pytest.mark.django_db


def test_security_admin_creates_and_edits_a_guard(
    security_admin: Any, admin: Any, api: Any
) -> None:
    client = api(security_admin)
    response = client.post(
        "/api/v1/resource-guards/",
        {"name": "rg-prod", "protected_operations": ["delete_vault"]},
        format="json",
    )
    assert response.status_code == 201
    assert set(response.json()["protected_operations"]) == {
        "delete_vault",
        "disable_soft_delete",
        "disable_mua",
    }
    # Adding is immediate ...
    patched = client.patch(
        "/api/v1/resource-guards/rg-prod/",
        {"protected_operations": ["delete_vault", "delete_recovery_point"]},
        format="json",
    )
    assert patched.status_code == 200
    assert "delete_recovery_point" in patched.json()["protected_operations"]
    # ... removing waits for another security admin (SPEC 3.4).
    patched = client.patch(
        "/api/v1/resource-guards/rg-prod/",
        {"protected_operations": ["delete_recovery_point"]},
        format="json",
    )
    assert (patched.status_code, patched.json()["kind"]) == (202, "guard_weaken")
    assert (
        "delete_vault"
        in client.get("/api/v1/resource-guards/rg-prod/").json()["protected_operations"]
    )
    listing = api(admin).get("/api/v1/resource-guards/").json()
    assert [g["name"] for g in listing["results"]] == ["rg-prod"]


def test_backup_admin_cannot_create_or_change_guards(
    admin: Any, security_admin: Any, api: Any
) -> None:
    assert (
        api(admin).post("/api/v1/resource-guards/", {"name": "mine"}, format="json").status_code
        == 403
    )
    api(security_admin).post("/api/v1/resource-guards/", {"name": "theirs"}, format="json")
    response = api(admin).patch(
        "/api/v1/resource-guards/theirs/", {"protected_operations": []}, format="json"
    )
    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")


def test_bad_guard_input(security_admin: Any, api: Any) -> None:
    response = api(security_admin).post(
        "/api/v1/resource-guards/", {"name": "rg-x", "protected_operations": ["fly"]}, format="json"
    )
    assert (response.status_code, response.json()["field"]) == (400, "protected_operations")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"justification": "", "duration_minutes": 60}, "justification"),
        ({"justification": "patch night", "duration_minutes": 0}, "duration_minutes"),
        ({"justification": "patch night", "duration_minutes": 540}, "duration_minutes"),
        ({"justification": "patch night"}, "duration_minutes"),
    ],
)
def test_bad_access_requests(
    admin: Any, security_admin: Any, api: Any, body: dict, field: str
) -> None:
    api(security_admin).post("/api/v1/resource-guards/", {"name": "rg"}, format="json")
    response = api(admin).post("/api/v1/resource-guards/rg/access-requests/", body, format="json")
    assert response.status_code == 400
    assert (response.json()["code"], response.json()["field"]) == ("validation_error", field)


def test_pim_journey_through_the_api(admin: Any, security_admin: Any, api: Any) -> None:
    vault = make_vault(admin, name="guarded")
    api(security_admin).post("/api/v1/resource-guards/", {"name": "rg"}, format="json")
    client = api(admin)
    url = f"/api/v1/vaults/{vault.name}/resource-guard/"
    unknown = client.put(url, {"guard": "nope"}, format="json")
    assert (unknown.status_code, unknown.json()["field"]) == (400, "guard")
    assert client.put(url, {"guard": "rg"}, format="json").json()["resource_guard"] == "rg"
    soft = f"/api/v1/vaults/{vault.name}/soft-delete/"
    refused = client.patch(soft, {"state": "disabled", "confirm_purge_count": 0}, format="json")
    assert (refused.status_code, refused.json()["code"]) == (409, "mua_required")
    assert "rg" in refused.json()["detail"]
    request = client.post(
        "/api/v1/resource-guards/rg/access-requests/",
        {"justification": "maintenance", "duration_minutes": 30},
        format="json",
    )
    assert request.status_code == 201
    assert (request.json()["kind"], request.json()["status"]) == ("elevation", "pending")
    approval_id = request.json()["id"]
    own = client.post(f"/api/v1/approvals/{approval_id}/approve/")
    assert own.status_code == 403
    approved = api(security_admin).post(f"/api/v1/approvals/{approval_id}/approve/").json()
    assert approved["status"] == "approved" and approved["active_until"]
    assert (
        client.patch(
            soft, {"state": "disabled", "confirm_purge_count": 0}, format="json"
        ).status_code
        == 200
    )
    revoked = api(security_admin).post(f"/api/v1/approvals/{approval_id}/revoke/")
    assert revoked.json()["status"] == "revoked"
    again = client.delete(url)
    assert (again.status_code, again.json()["code"]) == (409, "mua_required")
    assert Vault.objects.get(pk=vault.pk).resource_guard is not None


def test_guard_pages(admin: Any, security_admin: Any) -> None:
    security = Client()
    security.force_login(security_admin)
    response = security.post(
        "/resource-guards/", {"name": "web-rg", "protected_operations": ["delete_vault"]}
    )
    assert response.status_code == 302
    assert "Always protected" in security.get("/resource-guards/web-rg/").content.decode()
    backup = Client()
    backup.force_login(admin)
    assert "web-rg" in backup.get("/resource-guards/").content.decode()
    backup.post(
        "/resource-guards/web-rg/access/", {"justification": "fix", "duration_minutes": "60"}
    )
    page = security.get("/approvals/").content.decode()
    assert "Elevation on a Resource Guard" in page
