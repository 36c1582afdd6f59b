"""Issue 7, item 3 (web surface): login throttling, a TOTP second factor at the moment of
approval, and the idle session timeout."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from portal import services
from portal.gate import DomainError
from portal.models import Alert, Approval, AuditRecord
from tests.conftest import PASSWORD, make_user
from vaults import services as vault_services
from vaults.models import Vault

pytestmark = pytest.mark.django_db

LOGIN_LIMIT = 5


# --- helpers --------------------------------------------------------------------------------


def code_at(key_hex: str, offset_steps: int = 0) -> str:
    """The code an authenticator app shows now (or ``offset_steps`` steps later)."""
    totp = TOTP(bytes.fromhex(key_hex))
    totp.time = time.time() + 30 * offset_steps
    return f"{totp.token():06d}"


def enrol(user: Any) -> TOTPDevice:
    key = "3132333435363738393031323334353637383930"
    services.authenticator_enrol(
        actor=user, key=key, otp=code_at(key, offset_steps=-1), password_ok=True
    )
    return TOTPDevice.objects.get(user=user, confirmed=True)


def fresh_code(user: Any) -> str:
    """The requester's next unused code (enrolling them first), when a second factor is on."""
    from django.conf import settings

    if settings.HOLDFAST_APPROVER_2FA != "required":
        return ""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or enrol(user)
    totp = TOTP(bytes.fromhex(device.key))
    totp.time = (device.last_t + 1) * 30
    return f"{totp.token():06d}"


def request_lock(admin: Any, vault: Vault) -> Approval:
    return vault_services.immutability_lock_request(
        actor=admin, vault=vault, confirmation=vault.name, otp=fresh_code(admin)
    )


@pytest.fixture
def two_factor(settings: Any) -> Any:
    settings.HOLDFAST_APPROVER_2FA = "required"
    return settings


@pytest.fixture
def no_otp_throttle(settings: Any) -> None:
    # Tests that follow a wrong code with a right one at once; throttling has its own test.
    settings.OTP_TOTP_THROTTLE_FACTOR = 0


def fail_logins(client: Any, username: str, times: int) -> Any:
    response = None
    for _ in range(times):
        response = client.post(
            reverse("login"), {"username": username, "password": "not-the-password"}
        )
    return response


# --- login throttling -----------------------------------------------------------------------


def test_five_failed_sign_ins_lock_the_account_out_even_for_the_right_password(
    client: Any, admin: Any
) -> None:
    response = fail_logins(client, admin.username, LOGIN_LIMIT - 1)
    assert response.status_code == 200  # still the ordinary "didn't match"
    response = fail_logins(client, admin.username, 1)
    assert response.status_code == 429
    assert b"Too many failed sign-ins" in response.content
    response = client.post(reverse("login"), {"username": admin.username, "password": PASSWORD})
    assert response.status_code == 429
    assert b"locked for 15 minutes" in response.content
    assert "_auth_user_id" not in client.session


def test_the_lockout_ends_after_the_cool_off(client: Any, admin: Any) -> None:
    from axes.models import AccessAttempt

    fail_logins(client, admin.username, LOGIN_LIMIT)
    # Age the attempts past the 15-minute cool-off instead of waiting for it.
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    response = client.post(reverse("login"), {"username": admin.username, "password": PASSWORD})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(admin.pk)


def test_a_lockout_is_per_username_and_address(client: Any, admin: Any, admin2: Any) -> None:
    fail_logins(client, admin.username, LOGIN_LIMIT)
    response = client.post(reverse("login"), {"username": admin2.username, "password": PASSWORD})
    assert response.status_code == 302
    other_address = client.post(
        reverse("login"),
        {"username": admin.username, "password": PASSWORD},
        REMOTE_ADDR="10.0.0.9",
    )
    assert other_address.status_code == 302


def test_a_success_resets_the_failure_count(client: Any, admin: Any) -> None:
    fail_logins(client, admin.username, LOGIN_LIMIT - 1)
    client.post(reverse("login"), {"username": admin.username, "password": PASSWORD})
    client.logout()
    response = fail_logins(client, admin.username, LOGIN_LIMIT - 1)
    assert response.status_code == 200


def test_the_api_token_endpoint_is_throttled_too(api: Any, admin: Any) -> None:
    from rest_framework.test import APIClient

    client = APIClient()
    url = reverse("api-token")
    for _ in range(LOGIN_LIMIT - 1):
        response = client.post(url, {"username": admin.username, "password": "wrong"})
        assert response.status_code == 400
    response = client.post(url, {"username": admin.username, "password": "wrong"})
    assert response.status_code == 429
    response = client.post(url, {"username": admin.username, "password": PASSWORD})
    assert response.status_code == 429
    assert response.json()["code"] == "login_locked"
    assert "Too many failed sign-ins" in response.json()["detail"]


def test_the_admin_login_shares_the_lockout(client: Any, admin: Any) -> None:
    fail_logins(client, admin.username, LOGIN_LIMIT)
    response = client.post(
        reverse("admin:login"), {"username": admin.username, "password": PASSWORD}
    )
    assert response.status_code == 429


# --- the second factor at the moment of approval ------------------------------------------


def test_with_two_factor_off_approving_needs_no_code(
    admin: Any, security_admin: Any, vault: Vault
) -> None:
    approval = request_lock(admin, vault)
    services.approval_approve(actor=security_admin, approval=approval)
    vault.refresh_from_db()
    assert vault.is_locked


def test_an_approver_without_an_authenticator_is_told_to_enrol(
    two_factor: Any, admin: Any, security_admin: Any, vault: Vault
) -> None:
    approval = request_lock(admin, vault)
    with pytest.raises(DomainError) as refusal:
        services.approval_approve(actor=security_admin, approval=approval, otp="123456")
    assert refusal.value.code == "otp_required"
    assert refusal.value.http_status == 409
    assert "enrol an authenticator app" in refusal.value.detail
    assert "/account/two-factor/" in refusal.value.detail
    vault.refresh_from_db()
    assert not vault.is_locked
    record = AuditRecord.objects.order_by("-id").first()
    assert (record.operation, record.outcome, record.code) == (
        "approval_approve",
        "refused",
        "otp_required",
    )


def test_a_missing_code_is_asked_for(
    two_factor: Any, admin: Any, security_admin: Any, vault: Vault
) -> None:
    enrol(security_admin)
    approval = request_lock(admin, vault)
    with pytest.raises(DomainError) as refusal:
        services.approval_approve(actor=security_admin, approval=approval)
    assert refusal.value.code == "otp_required"
    assert "current code" in refusal.value.detail


def test_a_wrong_code_is_refused_and_alerts(
    two_factor: Any, admin: Any, security_admin: Any, vault: Vault
) -> None:
    device = enrol(security_admin)
    approval = request_lock(admin, vault)
    wrong = f"{(int(code_at(device.key)) + 1) % 1_000_000:06d}"
    with pytest.raises(DomainError) as refusal:
        services.approval_approve(actor=security_admin, approval=approval, otp=wrong)
    assert refusal.value.code == "otp_invalid"
    assert Approval.objects.get(pk=approval.pk).status == Approval.Status.PENDING
    assert Alert.objects.filter(kind="operation_refused").exists()


def test_a_fresh_code_approves_and_cannot_be_used_again(
    two_factor: Any, no_otp_throttle: None, admin: Any, security_admin: Any, vault: Vault
) -> None:
    from tests.factories import make_vault

    device = enrol(security_admin)
    code = code_at(device.key)
    services.approval_approve(actor=security_admin, approval=request_lock(admin, vault), otp=code)
    vault.refresh_from_db()
    assert vault.is_locked

    other = make_vault(admin, name="vault-two")
    second = request_lock(admin, other)
    with pytest.raises(DomainError) as refusal:
        services.approval_approve(actor=security_admin, approval=second, otp=code)
    assert refusal.value.code == "otp_invalid"
    assert "already used" in refusal.value.detail
    # The app's next code (one step on, within the tolerance) is fresh.
    services.approval_approve(actor=security_admin, approval=second, otp=code_at(device.key, 1))
    other.refresh_from_db()
    assert other.is_locked


def test_the_enrolment_code_cannot_approve(
    two_factor: Any, admin: Any, security_admin: Any, vault: Vault
) -> None:
    key = "3132333435363738393031323334353637383930"
    code = code_at(key)
    services.authenticator_enrol(actor=security_admin, key=key, otp=code, password_ok=True)
    with pytest.raises(DomainError) as refusal:
        services.approval_approve(
            actor=security_admin, approval=request_lock(admin, vault), otp=code
        )
    assert refusal.value.code == "otp_invalid"


def test_wrong_codes_slow_further_tries_down(
    two_factor: Any, admin: Any, security_admin: Any, vault: Vault
) -> None:
    device = enrol(security_admin)
    approval = request_lock(admin, vault)
    with pytest.raises(DomainError):
        services.approval_approve(actor=security_admin, approval=approval, otp="000000x")
    # Even the right code is refused until the throttling delay has passed.
    with pytest.raises(DomainError) as refusal:
        services.approval_approve(
            actor=security_admin, approval=approval, otp=code_at(device.key, 1)
        )
    assert refusal.value.code == "otp_invalid"
    assert "Too many wrong codes" in refusal.value.detail


def test_denying_needs_a_fresh_code_too(
    two_factor: Any, admin: Any, security_admin: Any, vault: Vault
) -> None:
    device = enrol(security_admin)
    approval = request_lock(admin, vault)
    with pytest.raises(DomainError) as refusal:
        services.approval_deny(actor=security_admin, approval=approval, reason="no")
    assert refusal.value.code == "otp_required"
    services.approval_deny(
        actor=security_admin, approval=approval, reason="no", otp=code_at(device.key, 1)
    )
    assert Approval.objects.get(pk=approval.pk).status == Approval.Status.DENIED


def test_the_requester_is_refused_before_any_code_is_spent(
    two_factor: Any, admin: Any, security_admin: Any, vault: Vault
) -> None:
    device = enrol(security_admin)
    approval = Approval.objects.get(pk=request_lock(admin, vault).pk)
    with pytest.raises(DomainError) as refusal:
        services.approval_approve(actor=admin, approval=approval, otp=code_at(device.key))
    assert refusal.value.code == "permission_denied"
    device.refresh_from_db()
    assert device.throttling_failure_count == 0


# --- the API --------------------------------------------------------------------------------


def test_api_approval_needs_an_otp_field(
    two_factor: Any, no_otp_throttle: None, api: Any, admin: Any, security_admin: Any, vault: Vault
) -> None:
    approval = request_lock(admin, vault)
    client = api(security_admin)
    url = f"/api/v1/approvals/{approval.pk}/approve/"
    response = client.post(url, {}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "otp_required"
    assert "enrol an authenticator" in response.json()["detail"]

    device = enrol(security_admin)
    response = client.post(url, {"otp": "999999x"}, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "otp_invalid")
    assert response.json()["field"] == "otp"
    response = client.post(url, {"otp": code_at(device.key, 1)}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "approved"


def test_api_deny_takes_an_otp_field(
    two_factor: Any, api: Any, admin: Any, security_admin: Any, vault: Vault
) -> None:
    device = enrol(security_admin)
    approval = request_lock(admin, vault)
    response = api(security_admin).post(
        f"/api/v1/approvals/{approval.pk}/deny/",
        {"reason": "not now", "otp": code_at(device.key, 1)},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "denied"


def test_the_schema_documents_the_otp_field(client: Any) -> None:
    schema = client.get(reverse("api-schema"), {"format": "json"}).json()
    decision = next(
        v for k, v in schema["components"]["schemas"].items() if k.startswith("Decision")
    )
    assert "otp" in decision["properties"]


# --- the pages ------------------------------------------------------------------------------


def test_the_approvals_page_asks_for_a_code_and_explains_refusals(
    two_factor: Any, client: Any, admin: Any, security_admin: Any, vault: Vault
) -> None:
    approval = request_lock(admin, vault)
    client.force_login(security_admin)
    page = client.get(reverse("approval-page", args=[approval.pk]))
    assert b'name="otp"' in page.content
    response = client.post(
        reverse("approval-decide", args=[approval.pk, "approve"]),
        {"otp": "123456", "confirmation": vault.name},
        follow=True,
    )
    assert b"enrol an authenticator app" in response.content
    device = enrol(security_admin)
    response = client.post(
        reverse("approval-decide", args=[approval.pk, "approve"]),
        {"otp": code_at(device.key, 1), "confirmation": vault.name},
        follow=True,
    )
    assert Approval.objects.get(pk=approval.pk).status == Approval.Status.APPROVED
    assert b"approved, the change is made" in response.content


def test_the_approvals_page_asks_for_no_code_when_two_factor_is_off(
    client: Any, admin: Any, security_admin: Any, vault: Vault
) -> None:
    request_lock(admin, vault)
    client.force_login(security_admin)
    assert b'name="otp"' not in client.get(reverse("approvals")).content


def test_enrolling_shows_the_key_and_confirms_with_a_code_and_the_password(
    client: Any, security_admin: Any
) -> None:
    client.force_login(security_admin)
    page = client.get(reverse("two-factor"))
    assert page.status_code == 200
    uri = page.context["config_url"]
    assert uri.startswith("otpauth://totp/Holdfast%3Asam?")
    assert page.context["secret"] in uri
    key = client.session["holdfast_pending_authenticator_key"]

    wrong_password = client.post(reverse("two-factor"), {"otp": code_at(key), "password": "nope"})
    assert b"your password is wrong" in wrong_password.content
    wrong_code = client.post(reverse("two-factor"), {"otp": "12", "password": PASSWORD})
    assert b"does not match" in wrong_code.content
    assert not TOTPDevice.objects.filter(user=security_admin).exists()

    response = client.post(
        reverse("two-factor"), {"otp": code_at(key), "password": PASSWORD}, follow=True
    )
    assert b"Authenticator enrolled" in response.content
    device = TOTPDevice.objects.get(user=security_admin)
    assert device.confirmed and device.key == key
    assert b"enrolled on" in client.get(reverse("two-factor")).content
    operations = list(
        AuditRecord.objects.filter(operation="authenticator_enrol")
        .order_by("id")
        .values_list("outcome", flat=True)
    )
    assert operations == ["refused", "refused", "allowed"]


def test_a_confirmed_authenticator_is_not_replaced_from_the_page(
    client: Any, security_admin: Any
) -> None:
    enrol(security_admin)
    with pytest.raises(DomainError) as refusal:
        key = "00" * 20
        services.authenticator_enrol(
            actor=security_admin, key=key, otp=code_at(key), password_ok=True
        )
    assert "already have an authenticator" in refusal.value.detail
    assert TOTPDevice.objects.filter(user=security_admin).count() == 1


# --- session idle timeout -------------------------------------------------------------------


def test_sessions_expire_after_being_idle(settings: Any, client: Any, reader: Any) -> None:
    settings.SESSION_COOKIE_AGE = 600
    client.force_login(reader)
    assert client.get(reverse("approvals")).status_code == 200
    session = Session.objects.get(session_key=client.session.session_key)
    # Every request pushes the expiry on: activity keeps a session alive.
    assert session.expire_date > timezone.now() + timedelta(seconds=590)
    Session.objects.filter(pk=session.pk).update(expire_date=timezone.now() - timedelta(seconds=1))
    response = client.get(reverse("approvals"))
    assert response.status_code == 302
    assert response.headers["Location"].startswith(reverse("login"))


def test_activity_moves_the_expiry_on(settings: Any, client: Any, reader: Any) -> None:
    settings.SESSION_COOKIE_AGE = 600
    client.force_login(reader)
    Session.objects.update(expire_date=timezone.now() + timedelta(seconds=30))
    client.get(reverse("approvals"))
    session = Session.objects.get(session_key=client.session.session_key)
    assert session.expire_date > timezone.now() + timedelta(seconds=590)


def test_settings_default_to_a_30_minute_idle_timeout_and_two_factor_off_in_development() -> None:
    from django.conf import settings

    assert settings.SESSION_SAVE_EVERY_REQUEST is True
    assert settings.SESSION_COOKIE_AGE == 30 * 60
    assert settings.HOLDFAST_APPROVER_2FA == "off"


# --- the requester's second factor (seed 003: "MUA ... prompt the administrator for MFA") ----


def _file_elevation(user: Any, vault: Vault, otp: str) -> Any:
    from guards import services as guard_services
    from guards.models import ResourceGuard

    guard = ResourceGuard.objects.first() or guard_services.guard_create(
        actor=make_user("gina", "security_admin"), name="rg-otp"
    )
    return guard_services.elevation_request(
        actor=user, guard=guard, justification="patch", duration_minutes=30, otp=otp
    )


def _file_lock(user: Any, vault: Vault, otp: str) -> Any:
    return vault_services.immutability_lock_request(
        actor=user, vault=vault, confirmation=vault.name, otp=otp
    )


def _file_always_on(user: Any, vault: Vault, otp: str) -> Any:
    return vault_services.soft_delete_always_on_request(
        actor=user, vault=vault, confirmation=vault.name, otp=otp
    )


def _file_guard_weakening(user: Any, vault: Vault, otp: str) -> Any:
    from guards import services as guard_services
    from guards.models import ResourceGuard

    guard = ResourceGuard.objects.filter(name="rg-weak").first() or guard_services.guard_create(
        actor=user, name="rg-weak"
    )
    return guard_services.guard_update(actor=user, guard=guard, protected_operations=[], otp=otp)


REQUESTS = {
    "elevation": (_file_elevation, "admin"),
    "lock": (_file_lock, "admin"),
    "always-on": (_file_always_on, "admin"),
    "guard weakening": (_file_guard_weakening, "gwen"),
}


@pytest.mark.parametrize("request_kind", list(REQUESTS))
def test_filing_a_request_needs_the_requesters_fresh_code(
    two_factor: Any, no_otp_throttle: None, admin: Any, vault: Vault, request_kind: str
) -> None:
    file, who = REQUESTS[request_kind]
    user = admin if who == "admin" else make_user(who, "security_admin")
    for otp, code in (("", "otp_required"), ("123456", "otp_invalid")):
        if code == "otp_invalid":
            enrol(user)
        with pytest.raises(DomainError) as refusal:
            file(user, vault, otp)
        assert (refusal.value.code, refusal.value.field) == (code, "otp")
    assert not Approval.objects.exists(), "nothing is filed without the code"
    approval = file(user, vault, fresh_code(user))
    assert approval.status == Approval.Status.PENDING


def test_the_api_takes_the_requesters_code(
    two_factor: Any, api: Any, admin: Any, vault: Vault
) -> None:
    url = f"/api/v1/vaults/{vault.name}/immutability/lock/"
    response = api(admin).post(url, {"confirmation": vault.name}, format="json")
    assert (response.status_code, response.json()["code"]) == (409, "otp_required")
    enrol(admin)
    response = api(admin).post(
        url, {"confirmation": vault.name, "otp": fresh_code(admin)}, format="json"
    )
    assert response.status_code == 202, response.content


def test_the_lock_form_asks_for_a_code(
    two_factor: Any, client: Any, admin: Any, vault: Vault
) -> None:
    client.force_login(admin)
    page = client.get(reverse("vaults:blade", args=[vault.name, "immutability"]))
    assert b'id="lock-otp"' in page.content
