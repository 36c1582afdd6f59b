"""Issue 12, finding 4: a superuser holds no role's power, and the Django admin is no back door.

Each attack is made as it was reported: a superuser whose role is ``reader`` approving, editing
a guard and creating a vault through the API and the pages; in the admin, reading API tokens,
adding the approve permission to the backup admins' group, creating a TOTP device, setting
another account's password or superuser flag. Then the API tokens: the database keeps a digest,
and a stolen row is no credential.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice
from knox.models import AuthToken
from rest_framework.test import APIClient

from guards import services as guard_services
from guards.models import ResourceGuard
from portal import services
from portal.gate import DomainError
from portal.models import Approval, AuditRecord
from portal.roles import has_capability
from tests.conftest import PASSWORD, make_user, token_for
from tests.factories import make_vault
from vaults import services as vault_services
from vaults.models import Vault

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(db: None) -> Any:
    """An installation admin whose role is reader: it reads, and that is all (SPEC 1)."""
    return make_user("root", "reader", is_superuser=True)


@pytest.fixture
def pending_lock(admin: Any) -> Approval:
    vault = make_vault(admin, name="to-lock")
    return vault_services.immutability_lock_request(
        actor=admin, vault=vault, confirmation=vault.name
    )


@pytest.fixture
def guard(security_admin: Any) -> ResourceGuard:
    return guard_services.guard_create(actor=security_admin, name="g-one")


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- a superuser with the reader role: every path, refused ----------------------------------


def approve_by_service(root: Any, approval: Approval, guard: ResourceGuard) -> int:
    try:
        services.approval_approve(actor=root, approval=approval)
    except DomainError as refusal:
        return refusal.http_status
    return 200


def approve_by_api(root: Any, approval: Approval, guard: ResourceGuard) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(root)}")
    return client.post(f"/api/v1/approvals/{approval.pk}/approve/", {}, format="json").status_code


def approve_by_page(root: Any, approval: Approval, guard: ResourceGuard) -> int:
    # The inbox answers with a message and a redirect; the state checked below is what counts.
    return signed_in(root).post(f"/approvals/{approval.pk}/approve/").status_code


def edit_guard_by_api(root: Any, approval: Approval, guard: ResourceGuard) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(root)}")
    return client.patch(
        f"/api/v1/resource-guards/{guard.name}/", {"description": "owned"}, format="json"
    ).status_code


def edit_guard_by_page(root: Any, approval: Approval, guard: ResourceGuard) -> int:
    return (
        signed_in(root)
        .post(f"/resource-guards/{guard.name}/operations/", {"description": "owned"})
        .status_code
    )


def create_vault_by_api(root: Any, approval: Approval, guard: ResourceGuard) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(root)}")
    return client.post(
        "/api/v1/vaults/", {"name": "rogue", "kind": "backup", "region": "x"}, format="json"
    ).status_code


def create_vault_by_page(root: Any, approval: Approval, guard: ResourceGuard) -> int:
    return (
        signed_in(root)
        .post("/vaults/new/", {"name": "rogue", "kind": "backup", "region": "x"})
        .status_code
    )


# Each attack and what it answers: 403, or for a page that reports a refusal as a message, the
# redirect back to where the person acted.
SUPERUSER_ATTACKS: list[tuple[Callable[[Any, Approval, ResourceGuard], int], int]] = [
    (approve_by_service, 403),
    (approve_by_api, 403),
    (approve_by_page, 302),
    (edit_guard_by_api, 403),
    (edit_guard_by_page, 302),
    (create_vault_by_api, 403),
    (create_vault_by_page, 403),
]


@pytest.mark.parametrize(
    ("attack", "answer"), SUPERUSER_ATTACKS, ids=lambda f: getattr(f, "__name__", "")
)
def test_a_superuser_whose_role_is_reader_changes_nothing(
    attack: Callable[[Any, Approval, ResourceGuard], int],
    answer: int,
    root: Any,
    pending_lock: Approval,
    guard: ResourceGuard,
) -> None:
    assert attack(root, pending_lock, guard) == answer
    pending_lock.refresh_from_db()
    guard.refresh_from_db()
    assert pending_lock.status == "pending"
    assert not Vault.objects.get(name="to-lock").is_locked
    assert guard.description == ""
    assert not Vault.objects.filter(name="rogue").exists()
    assert not AuditRecord.objects.filter(actor=root, outcome="allowed").exists()
    assert AuditRecord.objects.filter(actor=root, code="permission_denied").exists()


@pytest.mark.parametrize(
    ("role", "capabilities"),
    [
        ("reader", {"view"}),
        ("operator", {"view", "operate"}),
        ("backup_admin", {"view", "operate", "manage"}),
        ("security_admin", {"view", "approve", "manage_guards"}),
    ],
)
def test_a_superuser_holds_exactly_the_capabilities_of_its_role(
    role: str, capabilities: set[str]
) -> None:
    user = make_user(f"su-{role}", role, is_superuser=True)
    held = {
        c
        for c in ("view", "operate", "manage", "approve", "manage_guards")
        if has_capability(user, c)
    }
    assert held == capabilities
    assert has_capability(user, "superuser")


def test_permissions_added_to_a_group_or_a_user_grant_nothing(admin: Any) -> None:
    # What the admin (or SQL as the application) could do to the permission tables: the role
    # table in code decides, not the rows.
    approve = Permission.objects.get(content_type__app_label="guards", codename="approve")
    Group.objects.get(name="backup_admin").permissions.add(approve)
    admin.user_permissions.add(approve)
    fresh = type(admin).objects.get(pk=admin.pk)
    assert fresh.has_perm("guards.approve")  # Django would say yes ...
    assert not has_capability(fresh, "approve")  # ... Holdfast does not


def test_an_account_in_two_role_groups_gets_only_what_both_allow(admin: Any) -> None:
    # Only possible by writing around the services: fail closed.
    admin.groups.add(Group.objects.get(name="security_admin"))
    fresh = type(admin).objects.get(pk=admin.pk)
    assert has_capability(fresh, "view")
    assert not has_capability(fresh, "manage")
    assert not has_capability(fresh, "approve")


# --- the admin: read-only, no secrets ---------------------------------------------------------


def _html(response: Any) -> str:
    return response.content.decode(errors="replace")


def test_the_admin_cannot_add_the_approve_permission_to_a_group(superuser: Any) -> None:
    site = signed_in(superuser)
    group = Group.objects.get(name="backup_admin")
    approve = Permission.objects.get(content_type__app_label="guards", codename="approve")
    before = set(group.permissions.values_list("pk", flat=True))
    response = site.post(
        f"/admin/auth/group/{group.pk}/change/",
        {"name": "backup_admin", "permissions": [*before, approve.pk]},
    )
    assert response.status_code == 403
    assert set(group.permissions.values_list("pk", flat=True)) == before
    assert site.post("/admin/auth/group/add/", {"name": "sneaky"}).status_code == 403
    assert not Group.objects.filter(name="sneaky").exists()


def test_the_admin_cannot_change_an_account(
    superuser: Any, security_admin: Any, admin: Any
) -> None:
    site = signed_in(superuser)
    # Superuser status, a group, a password: none of it through the admin.
    assert (
        site.post(
            f"/admin/auth/user/{admin.pk}/change/",
            {"username": admin.username, "is_superuser": "on", "is_active": "on"},
        ).status_code
        == 403
    )
    response = site.post(
        f"/admin/auth/user/{security_admin.pk}/password/",
        {"password1": "taken-over-passphrase", "password2": "taken-over-passphrase"},
    )
    assert response.status_code in {302, 403, 404}
    security_admin.refresh_from_db()
    assert security_admin.check_password(PASSWORD)
    admin.refresh_from_db()
    assert not admin.is_superuser
    assert site.post("/admin/auth/user/add/", {"username": "x"}).status_code == 403
    assert site.post(f"/admin/auth/user/{admin.pk}/delete/", {"post": "yes"}).status_code == 403


def test_the_admin_never_shows_a_password_hash(superuser: Any, admin: Any) -> None:
    page = _html(signed_in(superuser).get(f"/admin/auth/user/{admin.pk}/change/"))
    assert admin.password not in page
    assert admin.password.split("$")[-1] not in page


def test_the_admin_never_shows_an_api_token(superuser: Any, security_admin: Any) -> None:
    key = token_for(security_admin)
    row = AuthToken.objects.get(user=security_admin)
    site = signed_in(superuser)
    pages = [site.get("/admin/knox/authtoken/"), site.get("/admin/knox/authtoken/?q=sam")]
    for page in pages:
        html = _html(page)
        for secret in (key, row.digest, row.token_key):
            assert secret not in html
    assert "sam" in _html(pages[0])  # the admin does list who holds a token
    assert site.post("/admin/knox/authtoken/add/", {"user": security_admin.pk}).status_code == 403
    assert AuthToken.objects.count() == 1


def test_the_admin_cannot_create_or_read_a_totp_device(superuser: Any, security_admin: Any) -> None:
    site = signed_in(superuser)
    response = site.post(
        "/admin/otp_totp/totpdevice/add/",
        {"user": security_admin.pk, "name": "thief", "key": "00" * 20, "confirmed": "on"},
    )
    assert response.status_code == 403
    assert not TOTPDevice.objects.exists()
    device = TOTPDevice.objects.create(user=security_admin, name="phone", confirmed=True)
    for path in (
        f"/admin/otp_totp/totpdevice/{device.pk}/change/",
        f"/admin/otp_totp/totpdevice/{device.pk}/config/",
        f"/admin/otp_totp/totpdevice/{device.pk}/qrcode/",
        "/admin/otp_totp/totpdevice/",
    ):
        assert device.key not in _html(site.get(path, follow=True)), path
    assert (
        site.post(f"/admin/otp_totp/totpdevice/{device.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert TOTPDevice.objects.filter(pk=device.pk).exists()


def test_the_admin_cannot_approve(superuser: Any, pending_lock: Approval) -> None:
    # The admin's approve action used to be a second approvals inbox, without the 2FA prompt.
    site = signed_in(superuser)
    listing = _html(site.get("/admin/portal/approval/"))
    assert "approve_selected" not in listing
    site.post(
        "/admin/portal/approval/",
        {"action": "approve_selected", "_selected_action": [pending_lock.pk]},
    )
    pending_lock.refresh_from_db()
    assert pending_lock.status == "pending"


def test_every_admin_model_is_read_only(superuser: Any) -> None:
    from django.contrib import admin
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = superuser
    writable = [
        model._meta.label
        for model, model_admin in admin.site._registry.items()
        if model_admin.has_add_permission(request)
        or model_admin.has_change_permission(request)
        or model_admin.has_delete_permission(request)
        or model_admin.get_actions(request)
    ]
    assert writable == []
    assert len(admin.site._registry) > 10


def test_the_admin_cannot_change_the_periodic_schedule(superuser: Any) -> None:
    # Switching a sweep or the audit anchor off would be a quiet weakening.
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every = IntervalSchedule.objects.create(every=1, period="hours")
    task = PeriodicTask.objects.create(name="sweep", task="x", interval=every, enabled=True)
    site = signed_in(superuser)
    site.post(
        "/admin/django_celery_beat/periodictask/",
        {"action": "disable_tasks", "_selected_action": [task.pk]},
    )
    task.refresh_from_db()
    assert task.enabled


# --- API tokens: digests only ------------------------------------------------------------------


def test_a_token_is_stored_as_a_digest_and_shown_once(admin: Any) -> None:
    answer = APIClient().post(
        "/api/v1/auth/token/", {"username": admin.username, "password": PASSWORD}, format="json"
    )
    assert answer.status_code == 200
    key = answer.json()["token"]
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    row = AuthToken.objects.get(user=admin)
    assert key not in (row.digest, row.token_key)
    assert len(row.token_key) < len(key)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM knox_authtoken")
        assert not any(key in str(value) for value in cursor.fetchall()[0])
    # Issuing is audited, without the key.
    record = AuditRecord.objects.filter(operation="api_token_issue").get()
    assert record.actor == admin
    assert key not in str(record.after) + str(record.details)


def test_a_stolen_token_row_signs_nobody_in(admin: Any) -> None:
    token_for(admin)
    row = AuthToken.objects.get(user=admin)
    for stolen in (row.digest, row.token_key, row.digest[:64]):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {stolen}")
        response = client.get("/api/v1/vaults/")
        assert response.status_code == 401, stolen
        assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize(
    "header",
    [
        "Token \x00" + "a" * 63,
        "Token " + "\u00e9" * 64,
        "Token " + "g" * 64,
        "Token",
        "Token a b",
        "Token " + "a" * 1000,
    ],
)
def test_a_malformed_token_header_is_401_not_500(admin: Any, header: str) -> None:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/vaults/")
    # A NUL in any header is refused by the request guard before authentication looks.
    expected = (400, "validation_error") if "\x00" in header else (401, "not_authenticated")
    assert (response.status_code, response.json()["code"]) == expected


def test_a_token_stops_working_when_revoked_or_its_account_is_deactivated(
    admin: Any, superuser: Any
) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(admin)}")
    assert client.get("/api/v1/vaults/").status_code == 200
    assert client.delete("/api/v1/auth/token/").status_code == 204
    assert client.get("/api/v1/vaults/").status_code == 401

    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(admin)}")
    services.account_update(actor=superuser, user=admin, is_active=False)
    assert client.get("/api/v1/vaults/").status_code == 401
    assert not AuthToken.objects.filter(user=admin).exists()
    services.account_update(actor=superuser, user=admin, is_active=True)
    assert client.get("/api/v1/vaults/").status_code == 401  # reactivation revives no token


def test_old_plain_tokens_are_migrated_to_digests(admin: Any) -> None:
    # An installation upgraded from DRF's authtoken: its table of plain keys becomes digests.
    migration = importlib.import_module("portal.migrations.0006_user_role_grant_and_tokens")
    key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamptz,"
            " user_id integer)"
        )
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, now(), %s)", [key, admin.pk])
    from django.apps import apps

    with connection.schema_editor() as editor:
        migration.hash_old_tokens(apps, editor)
    assert "authtoken_token" not in connection.introspection.table_names()
    row = AuthToken.objects.get(user=admin)
    assert key not in (row.digest, row.token_key)
    assert row.expiry is not None
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/vaults/").status_code == 200
