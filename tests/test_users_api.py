"""Users (SPEC 3.9, 5): superusers manage accounts, security admins read them, and a grant of
power (the security_admin role, superuser status) is four-eyes: 202 with a pending
``user_role_grant`` approval decided by a security admin who is neither the requester nor the
account. Lowering and deactivating take effect at once. ``adduser`` is the audited bootstrap."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from portal import services
from portal.gate import DomainError
from portal.models import Alert, Approval, AuditRecord
from portal.roles import has_capability, role_of
from tests.conftest import PASSWORD, api_client_for, make_user

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-brand-new-passphrase"


@pytest.fixture
def root(db: None) -> Any:
    """The superuser who asks; a security admin too, so ``self_approval`` is what stops them."""
    return make_user("root", "security_admin", is_superuser=True)


def fresh(user: Any) -> Any:
    """The account as the database has it now (role caches live on the object)."""
    return get_user_model().objects.get(pk=user.pk)


def create(actor: Any, **body: Any) -> Any:
    body.setdefault("password", NEW_PASSWORD)
    return api_client_for(actor).post("/api/v1/users/", body, format="json")


def approve(actor: Any, approval_id: int) -> Any:
    return api_client_for(actor).post(
        f"/api/v1/approvals/{approval_id}/approve/", {}, format="json"
    )


# --- reading ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "status"),
    [("root", 200), ("security_admin", 200), ("admin", 403), ("reader", 403), ("operator", 403)],
)
def test_superusers_and_security_admins_read_accounts(
    request: pytest.FixtureRequest, persona: str, status: int, reader: Any
) -> None:
    client = api_client_for(request.getfixturevalue(persona))
    listing = client.get("/api/v1/users/")
    assert listing.status_code == status
    detail = client.get(f"/api/v1/users/{reader.username}/")
    assert detail.status_code == status
    if status == 200:
        assert {"count", "next", "previous", "results"} <= set(listing.json())
        assert detail.json() == {
            **detail.json(),
            "username": "rita",
            "role": "reader",
            "is_superuser": False,
            "is_active": True,
            "pending_grants": [],
        }
        assert "password" not in detail.json()
    else:
        assert listing.json()["code"] == "permission_denied"


def test_unknown_and_hostile_usernames_are_404(root: Any) -> None:
    client = api_client_for(root)
    client.raise_request_exception = False
    for name in ("nobody", "%00", "a%00b", "%ED%A0%80"):
        response = client.get(f"/api/v1/users/{name}/")
        assert response.status_code == 404, name
        assert response.json()["code"] == "not_found"


def test_a_security_admin_reads_but_does_not_manage(security_admin: Any, reader: Any) -> None:
    response = create(security_admin, username="newbie", role="reader")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    patch = api_client_for(security_admin).patch(
        f"/api/v1/users/{reader.username}/", {"role": "operator"}, format="json"
    )
    assert patch.status_code == 403
    assert role_of(fresh(reader)) == "reader"


# --- creating -------------------------------------------------------------------------------


def test_creating_an_account_without_power_is_immediate(root: Any) -> None:
    response = create(root, username="newbie", role="backup_admin", email="n@example.com")
    assert response.status_code == 201, response.json()
    assert response.json()["role"] == "backup_admin"
    newbie = get_user_model().objects.get(username="newbie")
    assert has_capability(newbie, "manage")
    assert newbie.check_password(NEW_PASSWORD)
    record = AuditRecord.objects.filter(operation="user_create").first()
    assert (record.actor, record.source, record.outcome) == (root, "api", "allowed")
    assert NEW_PASSWORD not in str(record.after)


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"username": "", "role": "reader"}, "validation_error", "username"),
        ({"username": "rita", "role": "reader"}, "validation_error", "username"),
        ({"username": "x", "role": "god"}, "validation_error", "role"),
        ({"username": "x", "role": "reader", "password": "123"}, "validation_error", "password"),
        ({"username": "a/b", "role": "reader"}, "validation_error", "username"),
        ({"username": "x\x00", "role": "reader"}, "validation_error", "username"),
        ({"username": "x", "role": "reader", "password": "\ud800" * 12}, "validation_error", None),
    ],
)
def test_bad_input_is_400_and_creates_nothing(
    root: Any, reader: Any, body: dict[str, Any], code: str, field: str | None
) -> None:
    before = get_user_model().objects.count()
    client = api_client_for(root)
    client.raise_request_exception = False
    # Sent as escaped JSON text: the test client could not encode a lone surrogate itself.
    raw = json.dumps({"password": NEW_PASSWORD, **body})
    response = client.post("/api/v1/users/", raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == code
    if field:
        assert response.json()["field"] == field
    assert get_user_model().objects.count() == before


@pytest.mark.parametrize(
    ("body", "meanwhile_role", "grant"),
    [
        ({"role": "security_admin"}, "reader", {"role": "security_admin"}),
        ({"role": "backup_admin", "is_superuser": True}, "backup_admin", {"is_superuser": True}),
        (
            {"role": "security_admin", "is_superuser": True},
            "reader",
            {"role": "security_admin", "is_superuser": True},
        ),
    ],
)
def test_creating_an_account_with_power_answers_202_and_waits_for_a_second_person(
    root: Any,
    security_admin: Any,
    body: dict[str, Any],
    meanwhile_role: str,
    grant: dict[str, Any],
) -> None:
    response = create(root, username="newbie", **body)
    assert response.status_code == 202, response.json()
    approval = response.json()
    assert approval["kind"] == "user_role_grant"
    assert approval["status"] == "pending"
    assert approval["requested_by"] == "root"
    assert approval["account"] == "newbie"
    assert approval["grant"] == grant

    # Meanwhile the account exists without the power.
    newbie = get_user_model().objects.get(username="newbie")
    assert role_of(newbie) == meanwhile_role
    assert not newbie.is_superuser
    assert not has_capability(newbie, "approve")
    listed = api_client_for(security_admin).get("/api/v1/approvals/?status=pending").json()
    assert approval["id"] in [a["id"] for a in listed["results"]]
    assert api_client_for(root).get("/api/v1/users/newbie/").json()["pending_grants"] == [
        approval["id"]
    ]

    decided = approve(security_admin, approval["id"])
    assert decided.status_code == 200, decided.json()
    assert decided.json()["status"] == "approved"
    newbie = fresh(newbie)
    assert role_of(newbie) == body["role"]
    assert newbie.is_superuser == bool(body.get("is_superuser"))
    assert has_capability(newbie, "approve") == (body["role"] == "security_admin")


# --- who may decide a grant ------------------------------------------------------------------


@pytest.fixture
def grant(root: Any, reader: Any) -> Approval:
    """root asks for rita to become a security admin."""
    change = services.account_update(actor=root, user=reader, role="security_admin")
    assert change.grant is not None
    return change.grant


@pytest.mark.parametrize(
    ("decider", "code"),
    [
        ("root", "self_approval"),  # the requester, although a security admin
        ("admin", "permission_denied"),  # a backup admin
        ("superuser", "permission_denied"),  # a superuser whose role is backup_admin
        ("reader", "permission_denied"),  # the account itself, before the grant
    ],
)
def test_only_another_security_admin_decides_a_grant(
    request: pytest.FixtureRequest, grant: Approval, decider: str, code: str, reader: Any
) -> None:
    response = approve(request.getfixturevalue(decider), grant.pk)
    assert response.status_code in {403, 409}
    assert response.json()["code"] == code
    grant.refresh_from_db()
    assert grant.status == "pending"
    assert role_of(fresh(reader)) == "reader"


def test_the_account_concerned_cannot_approve_its_own_grant(
    root: Any, security_admin: Any, security_admin2: Any
) -> None:
    # sam is a security admin already; root asks to make sam a superuser too.
    change = services.account_update(actor=root, user=security_admin, is_superuser=True)
    assert change.grant is not None
    response = approve(security_admin, change.grant.pk)
    assert response.status_code == 409
    assert response.json()["code"] == "self_grant"
    assert not fresh(security_admin).is_superuser
    refused = AuditRecord.objects.filter(operation="approval_approve").first()
    assert (refused.outcome, refused.code, refused.actor) == (
        "refused",
        "self_grant",
        security_admin,
    )

    assert approve(security_admin2, change.grant.pk).status_code == 200
    assert fresh(security_admin).is_superuser


def test_a_superuser_cannot_grant_power_to_themselves_alone(root: Any) -> None:
    # root is a security admin and a superuser: asking for their own account is still
    # refused as their own request, and as their own account.
    boss = make_user("boss", "reader", is_superuser=True)
    change = services.account_update(actor=boss, user=boss, role="security_admin")
    assert change.grant is not None
    assert role_of(fresh(boss)) == "reader"
    with pytest.raises(DomainError) as refusal:
        services.approval_approve(actor=fresh(boss), approval=change.grant)
    assert refusal.value.code == "permission_denied"  # a reader approves nothing


def test_a_grant_whose_requester_lost_superuser_status_is_not_applied(
    root: Any, security_admin: Any, security_admin2: Any, grant: Approval, reader: Any
) -> None:
    other_root = make_user("other-root", "reader", is_superuser=True)
    services.account_update(actor=other_root, user=root, is_superuser=False)
    response = approve(security_admin2, grant.pk)
    assert response.status_code == 409
    assert response.json()["code"] == "requester_not_superuser"
    assert role_of(fresh(reader)) == "reader"
    assert (
        api_client_for(security_admin2)
        .post(f"/api/v1/approvals/{grant.pk}/deny/", {"reason": "stale"}, format="json")
        .json()["status"]
        == "denied"
    )


def test_a_denied_or_cancelled_grant_changes_nothing(
    root: Any, security_admin: Any, grant: Approval, reader: Any
) -> None:
    assert api_client_for(root).post(f"/api/v1/approvals/{grant.pk}/cancel/").status_code == 200
    assert approve(security_admin, grant.pk).json()["code"] == "approval_not_pending"
    assert role_of(fresh(reader)) == "reader"


def test_every_step_of_a_grant_is_audited_and_alerted(
    root: Any, security_admin: Any, reader: Any
) -> None:
    response = api_client_for(root).patch(
        f"/api/v1/users/{reader.username}/", {"role": "security_admin"}, format="json"
    )
    assert response.status_code == 202
    approval_id = response.json()["id"]
    approve(root, approval_id)  # refused: self_approval
    approve(security_admin, approval_id)
    trail = list(
        AuditRecord.objects.filter(
            operation__in=["user_update", "approval_approve", "user_role_grant"]
        )
        .order_by("id")
        .values_list("operation", "outcome", "code", "actor_name")
    )
    assert trail == [
        ("user_update", "allowed", "", "root"),
        ("approval_approve", "refused", "self_approval", "root"),
        ("user_role_grant", "allowed", "", "sam"),
        ("approval_approve", "allowed", "", "sam"),
    ]
    filed = AuditRecord.objects.get(operation="user_update")
    assert filed.before["role"] == "reader"
    assert filed.after["role"] == "reader"
    assert filed.after["grant"] == {"approval": approval_id, "role": "security_admin"}
    granted = AuditRecord.objects.get(operation="user_role_grant")
    assert (granted.before["role"], granted.after["role"]) == ("reader", "security_admin")
    alert = Alert.objects.get(kind="account_power_granted", target="user:rita")
    assert alert.category == "security"


# --- changing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "check"),
    [
        ({"role": "reader"}, lambda u: role_of(u) == "reader" and not has_capability(u, "approve")),
        ({"role": "backup_admin"}, lambda u: role_of(u) == "backup_admin"),
        ({"is_superuser": False}, lambda u: not u.is_superuser and not u.is_staff),
        ({"is_active": False}, lambda u: not u.is_active and not has_capability(u, "view")),
    ],
)
def test_lowering_takes_effect_at_once(root: Any, body: dict[str, Any], check: Any) -> None:
    target = make_user("powerful", "security_admin", is_superuser=True)
    response = api_client_for(root).patch("/api/v1/users/powerful/", body, format="json")
    assert response.status_code == 200, response.json()
    assert check(fresh(target))
    assert not Approval.objects.filter(kind="user_role_grant").exists()
    record = AuditRecord.objects.filter(operation="user_update").first()
    assert (record.outcome, record.source) == ("allowed", "api")


def test_a_change_that_both_lowers_and_raises_lowers_now_and_asks_for_the_rest(
    root: Any,
) -> None:
    target = make_user("mixed", "backup_admin", is_superuser=True)
    response = api_client_for(root).patch(
        "/api/v1/users/mixed/", {"role": "security_admin", "is_superuser": False}, format="json"
    )
    assert response.status_code == 202
    target = fresh(target)
    assert not target.is_superuser  # lowered at once
    assert role_of(target) == "backup_admin"  # the raise waits
    assert response.json()["grant"] == {"role": "security_admin"}


def test_asking_twice_for_the_same_grant_returns_the_pending_one(root: Any, reader: Any) -> None:
    first = api_client_for(root).patch(
        "/api/v1/users/rita/", {"role": "security_admin"}, format="json"
    )
    second = api_client_for(root).patch(
        "/api/v1/users/rita/", {"role": "security_admin"}, format="json"
    )
    assert first.json()["id"] == second.json()["id"]
    assert Approval.objects.filter(kind="user_role_grant").count() == 1


def test_the_password_of_an_account_with_power_is_changed_only_by_its_owner(
    root: Any, security_admin: Any, admin: Any
) -> None:
    # Whoever sets a security admin's password holds a security admin: one person, two votes.
    other_root = make_user("other-root", "reader", is_superuser=True)
    for target in (security_admin, root):
        response = api_client_for(other_root).patch(
            f"/api/v1/users/{target.username}/", {"password": NEW_PASSWORD}, format="json"
        )
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"
        assert fresh(target).check_password(PASSWORD)
    # An account without power: a superuser may reset it; and anyone's own password.
    ok = api_client_for(other_root).patch(
        f"/api/v1/users/{admin.username}/", {"password": NEW_PASSWORD}, format="json"
    )
    assert ok.status_code == 200
    assert fresh(admin).check_password(NEW_PASSWORD)
    own = api_client_for(root).patch(
        "/api/v1/users/root/", {"password": NEW_PASSWORD}, format="json"
    )
    assert own.status_code == 200
    assert fresh(root).check_password(NEW_PASSWORD)


def test_a_superuser_cannot_deactivate_their_own_account(root: Any) -> None:
    response = api_client_for(root).patch(
        "/api/v1/users/root/", {"is_active": False}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["field"] == "is_active"
    assert fresh(root).is_active


def test_put_and_delete_are_not_offered(root: Any, reader: Any) -> None:
    client = api_client_for(root)
    assert client.put("/api/v1/users/rita/", {"role": "reader"}, format="json").status_code == 405
    assert client.delete("/api/v1/users/rita/").status_code == 405


def test_the_schema_lists_user_role_grant_and_the_users_endpoints() -> None:
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    assert "user_role_grant" in schema
    assert "/api/v1/users/{username}/" in schema


# --- the server's shell: the bootstrap, audited, never silent --------------------------------


def test_the_first_security_admin_is_the_bootstrap(db: None) -> None:
    # Nobody could have approved a grant yet: created at once, audited, no one to alert.
    call_command(
        "adduser",
        "first",
        "--role",
        "security_admin",
        "--password",
        NEW_PASSWORD,
        stdout=StringIO(),
    )
    assert has_capability(get_user_model().objects.get(username="first"), "approve")
    assert AuditRecord.objects.filter(operation="user_create", source="command").exists()
    assert not Alert.objects.filter(kind="account_power_granted").exists()


@pytest.mark.parametrize(
    "flags", [["--role", "security_admin"], ["--role", "reader", "--superuser"]]
)
def test_adduser_after_the_bootstrap_grants_power_with_an_alert(
    security_admin: Any, flags: list[str]
) -> None:
    out = StringIO()
    call_command("adduser", "second-sam", *flags, "--password", NEW_PASSWORD, stdout=out)
    second = get_user_model().objects.get(username="second-sam")
    assert has_capability(second, "approve") or second.is_superuser
    record = AuditRecord.objects.filter(operation="user_create").first()
    assert (record.source, record.actor_name, record.target) == (
        "command",
        "holdfast",
        "user:second-sam",
    )
    assert Alert.objects.filter(kind="account_power_granted", target="user:second-sam").exists()


def test_adduser_never_changes_an_existing_account(reader: Any) -> None:
    with pytest.raises(CommandError, match="already exists"):
        call_command(
            "adduser", "rita", "--role", "security_admin", "--superuser", "--password", NEW_PASSWORD
        )
    rita = fresh(reader)
    assert role_of(rita) == "reader"
    assert not rita.is_superuser
    assert rita.check_password(PASSWORD)


def test_the_shell_raises_no_existing_account_to_power(reader: Any) -> None:
    from portal.gate import entry_point

    with entry_point("command"), pytest.raises(DomainError) as refusal:
        services.account_update(actor=None, user=reader, role="security_admin")
    assert refusal.value.code == "permission_denied"
    assert role_of(fresh(reader)) == "reader"
    assert AuditRecord.objects.filter(operation="user_update", outcome="refused").exists()


# --- the Users page does the same -------------------------------------------------------------


def test_the_users_page_files_a_grant_and_says_so(root: Any, security_admin: Any) -> None:
    page = Client()
    page.force_login(root)
    response = page.post(
        "/users/",
        {"username": "newbie", "role": "security_admin", "password": NEW_PASSWORD},
        follow=True,
    )
    html = response.content.decode()
    assert "Pending approval #" in html
    grant = Approval.objects.get(kind="user_role_grant")
    assert f'data-pending-grant="{grant.pk}"' in html
    newbie = get_user_model().objects.get(username="newbie")
    assert role_of(newbie) == "reader"

    # An update that raises is pending too; one that lowers is immediate.
    response = page.post(
        f"/users/{newbie.pk}/",
        {"role": "reader", "is_superuser": "on", "is_active": "on"},
        follow=True,
    )
    assert "Pending approval #" in response.content.decode()
    assert not fresh(newbie).is_superuser
    page.post(f"/users/{newbie.pk}/", {"role": "reader"})
    assert not fresh(newbie).is_active

    # The inbox shows what the grant gives, and a second security admin decides it there.
    inbox = Client()
    inbox.force_login(security_admin)
    assert "Account newbie: role security_admin" in inbox.get("/approvals/").content.decode()
    inbox.post(f"/approvals/{grant.pk}/approve/")
    assert role_of(fresh(newbie)) == "security_admin"


def test_the_users_page_shows_form_errors(root: Any) -> None:
    page = Client()
    page.force_login(root)
    response = page.post("/users/", {"username": "x", "role": "reader", "password": "123"})
    assert response.status_code == 200
    assert "password:" in response.content.decode()
    assert not get_user_model().objects.filter(username="x").exists()


def test_security_admins_see_the_users_page_without_its_forms(
    security_admin: Any, reader: Any
) -> None:
    page = Client()
    page.force_login(security_admin)
    html = page.get("/users/").content.decode()
    assert 'data-user="rita"' in html
    assert "Add a user" not in html
    assert (
        page.post(
            "/users/", {"username": "x", "role": "reader", "password": NEW_PASSWORD}
        ).status_code
        == 403
    )
    assert page.post(f"/users/{reader.pk}/", {"role": "operator"}).status_code == 403
    assert role_of(fresh(reader)) == "reader"


def test_an_installation_admin_removes_a_lost_authenticator(root: Any, security_admin: Any) -> None:
    from django_otp.plugins.otp_totp.models import TOTPDevice

    TOTPDevice.objects.create(user=security_admin, name="phone", confirmed=True)
    page = Client()
    page.force_login(root)
    assert "Remove authenticator" in page.get("/users/").content.decode()
    page.post(f"/users/{security_admin.pk}/authenticator/remove/")
    assert not TOTPDevice.objects.filter(user=security_admin).exists()
    assert AuditRecord.objects.filter(operation="authenticator_reset", outcome="allowed").exists()
    assert Alert.objects.filter(kind="authenticator_removed").exists()
    other = Client()
    other.force_login(security_admin)
    assert other.post(f"/users/{root.pk}/authenticator/remove/").status_code == 403


# --- the owner's own password ------------------------------------------------------------------


def test_an_owner_changes_their_own_password_and_their_tokens_end(admin: Any, api: Any) -> None:
    from portal.models import AuditRecord
    from tests.conftest import PASSWORD

    client = api(admin)
    wrong = client.post(
        "/api/v1/auth/password/",
        {"current_password": "nope", "new_password": "a-new-long-secret-2026"},
        format="json",
    )
    assert (wrong.status_code, wrong.json()["field"]) == (400, "current_password")
    weak = client.post(
        "/api/v1/auth/password/",
        {"current_password": PASSWORD, "new_password": "123"},
        format="json",
    )
    assert (weak.status_code, weak.json()["field"]) == (400, "new_password")
    done = client.post(
        "/api/v1/auth/password/",
        {"current_password": PASSWORD, "new_password": "a-new-long-secret-2026"},
        format="json",
    )
    assert done.status_code == 204
    admin.refresh_from_db()
    assert admin.check_password("a-new-long-secret-2026")
    assert client.get("/api/v1/vaults/").status_code == 401, "its tokens ended"
    record = AuditRecord.objects.filter(operation="password_change").first()
    assert (record.outcome, record.actor_id, record.after) == (
        "allowed",
        admin.pk,
        {"password": "changed"},
    )


def test_the_password_page(admin: Any, client: Any) -> None:
    from tests.conftest import PASSWORD

    client.force_login(admin)
    assert b"Your password" in client.get("/account/password/").content
    page = client.post(
        "/account/password/",
        {"current_password": PASSWORD, "new_password": "another-long-secret-26"},
        follow=True,
    )
    assert b"Password changed" in page.content
    assert client.get("/account/password/").status_code == 200, "this session stays signed in"
