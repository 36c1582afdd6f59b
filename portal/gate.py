"""The operation gate (SPEC section 4): the one way any state in Holdfast changes.

Every state-changing service calls :func:`execute` with an operation name from
:data:`OPERATIONS`. In one transaction the gate locks the vault row, checks, in order, the
actor's role (``permission_denied``), the absolute rules of the operation (immutability, lock,
always-on soft delete, ...) and multi-user authorization (``mua_required``); then it performs
the change and writes the audit record. A refusal writes only the audit record and raises
:class:`DomainError` once that record is committed.

The table is the single place to read which checks an operation needs.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import transaction

from . import clock
from .alerts import raise_alert
from .models import Approval, AuditRecord
from .roles import has_capability

if TYPE_CHECKING:
    from vaults.models import Vault

T = TypeVar("T")

# Refusals that raise the "operation refused by immutability or MUA" security alert.
# A wrong second-factor code on an approval may be a stolen session guessing: alert on it too.
ALERTING_REFUSALS = {"immutable_vault", "immutability_locked", "mua_required", "otp_invalid"}

HTTP_STATUS = {
    "permission_denied": 403,
    "validation_error": 400,
    "not_found": 404,
    "storage_unavailable": 503,
}


class DomainError(Exception):
    """A refusal with a stable error code and a sentence a person can act on."""

    def __init__(self, code: str, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.field = field

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 409)


@dataclass
class Check:
    """What a rule sees: the operation, who asks, the locked vault and the service's facts."""

    operation: str
    actor: Any
    vault: Vault | None
    facts: dict[str, Any]
    now: datetime


Rule = Callable[[Check], DomainError | None]


# --- absolute rules -------------------------------------------------------------------------


def vault_not_locked(check: Check) -> DomainError | None:
    if check.vault is not None and check.vault.is_locked:
        return DomainError(
            "immutability_locked",
            f"Immutability of vault {check.vault.name} is locked: it cannot be changed by anyone.",
        )
    return None


def no_unexpired_points_in_immutable_vault(check: Check) -> DomainError | None:
    vault = check.vault
    if vault is None or not vault.is_immutable:
        return None
    remaining = vault.unexpired_point_count(check.now)
    if remaining:
        return DomainError(
            "immutable_vault",
            f"Vault {vault.name} is immutable and still holds {remaining} unexpired recovery "
            "point(s): it can be deleted once they have expired.",
        )
    return None


def vault_is_empty(check: Check) -> DomainError | None:
    """SPEC 3.2: a vault goes only once it holds no item in any state (protected, stopped,
    soft-deleted) and no unexpired point, whatever its immutability or soft delete."""
    vault = check.vault
    if vault is None:
        return None
    items = vault.items.count()
    points = vault.unexpired_point_count(check.now)
    if items or points:
        return DomainError(
            "vault_not_empty",
            f"Vault {vault.name} still holds {items} protected item(s) (soft-deleted ones "
            f"included) and {points} unexpired recovery point(s): stop protection of every "
            "item and let soft delete and the points' retention run out first.",
        )
    return None


def guard_kept_while_locked(check: Check) -> DomainError | None:
    """A locked vault keeps a Resource Guard for good (the database refuses its removal too,
    vaults/triggers.py): it may be replaced by another, never removed."""
    vault = check.vault
    if vault is not None and vault.is_locked:
        return DomainError(
            "immutability_locked",
            f"Immutability of vault {vault.name} is locked, so it keeps a Resource Guard for "
            "good: replace the guard with another one instead of removing it.",
        )
    return None


def confirmation_matches(check: Check) -> DomainError | None:
    vault = check.vault
    if vault is not None and check.facts.get("confirmation") != vault.name:
        return DomainError(
            "confirmation_mismatch",
            f"Type the vault's exact name ({vault.name}) to confirm this irreversible action.",
            field="confirmation",
        )
    return None


def approval_pending(check: Check) -> DomainError | None:
    approval: Approval = check.facts["approval"]
    status = approval.effective_status(check.now)
    if status != Approval.Status.PENDING:
        return DomainError(
            "approval_not_pending",
            f"This request is {status}, not pending: nothing more can be decided on it.",
        )
    return None


# What an installation admin does to an account: whoever did any of it to the requester's
# account may have its password, so is not the second person on that account's requests.
ACCOUNT_ADMINISTRATION = ("user_create", "user_update", "authenticator_reset")


def not_own_request(check: Check) -> DomainError | None:
    """The approver is not the requester, nor someone who created or changed the requester's
    account, nor someone whose account the requester created or changed. Whoever set an
    account's password (and Holdfast lets no one but a superuser set it again) may hold it:
    a superuser who is also a security admin would otherwise make a puppet backup admin, ask
    as it and approve as themselves; a superuser who is also a backup admin would create a
    colleague's security-admin account (its grant rightly approved by another security
    admin), then sign in as it and approve their own request. One person, two accounts."""
    from django.db.models import Q

    approval: Approval = check.facts["approval"]
    if approval.requested_by_id == check.actor.pk:
        return DomainError(
            "self_approval",
            "You asked for this yourself: another security admin must decide it.",
        )
    requester = approval.requested_by.get_username()
    approver = check.actor.get_username()
    administered = (
        AuditRecord.objects.filter(
            outcome=AuditRecord.Outcome.ALLOWED, operation__in=ACCOUNT_ADMINISTRATION
        )
        .filter(
            Q(actor_id=check.actor.pk, target=f"user:{requester}")
            | Q(actor_id=approval.requested_by_id, target=f"user:{approver}")
        )
        .values_list("actor_id", flat=True)
        .first()
    )
    if administered == check.actor.pk:
        return DomainError(
            "self_approval",
            f"You created or changed account {requester} yourself, so you are not the second "
            "person on its requests: another security admin must decide it.",
        )
    # (The account a grant is for has its own refusal, self_grant, when it approves.)
    if administered is not None and approval.account_id != check.actor.pk:
        return DomainError(
            "self_approval",
            f"{requester} created or changed your account, so you are not the second person "
            "on their requests: another security admin must decide it.",
        )
    setter = password_setter(requester)
    if setter is not None and setter == password_setter(approver):
        return DomainError(
            "self_approval",
            f"Accounts {requester} and {approver} both still have the password someone else "
            "chose for them, the same person: whoever holds both is one person. Each sets "
            "their own password (Account, Password) before one decides the other's requests.",
        )
    return None


def password_setter(username: str) -> int | None:
    """Who chose the account's current password, from the audit log: the account itself once
    it changed its own, the superuser who created or reset it on a page or in the API, or
    ``None`` for the server's shell (``adduser``, the bootstrap, trusted as the installation's
    root)."""
    from django.db.models import Q

    record = (
        AuditRecord.objects.filter(
            outcome=AuditRecord.Outcome.ALLOWED,
            target=f"user:{username}",
            operation__in=("user_create", "user_update", "password_change"),
        )
        .filter(~Q(operation="user_update") | Q(after__password="changed"))
        .order_by("-id")
        .values_list("actor_id", flat=True)
        .first()
    )
    return record


def current_password_given(check: Check) -> DomainError | None:
    if not check.facts.get("password_ok"):
        return DomainError(
            "validation_error",
            "current_password: your current password is wrong.",
            field="current_password",
        )
    return None


def second_factor(check: Check) -> DomainError | None:
    """With ``HOLDFAST_APPROVER_2FA=required``, deciding a request, and filing one (elevation,
    lock actions, guard weakening: seed 003, "MUA ... prompt the administrator for MFA"), needs
    a fresh TOTP code from the actor's confirmed authenticator, checked now: a stolen session
    alone can neither ask nor approve.

    The devices are locked, so one code cannot be spent twice by two requests racing; a
    verified code moves the device's ``last_t`` on, so it is never accepted again, and wrong
    codes slow further tries down (django-otp's throttling).
    """
    from django.conf import settings
    from django_otp.plugins.otp_totp.models import TOTPDevice

    if settings.HOLDFAST_APPROVER_2FA != "required":
        return None
    what = OPERATIONS[check.operation].label.lower() if check.operation in OPERATIONS else "this"
    devices = list(TOTPDevice.objects.select_for_update().filter(user=check.actor, confirmed=True))
    if not devices:
        return DomainError(
            "otp_required",
            f"To {what} you need two-factor authentication: enrol an authenticator app on "
            "your Two-factor page (/account/two-factor/) first, then enter its current code.",
            field="otp",
        )
    code = str(check.facts.get("otp") or "").strip()
    if not code:
        return DomainError(
            "otp_required",
            f"Enter the current code from your authenticator app to {what}.",
            field="otp",
        )
    locked_until = None
    for device in devices:
        allowed, info = device.verify_is_allowed()
        if not allowed:
            locked_until = (info or {}).get("locked_until")
            continue
        if device.verify_token(code):
            return None
    if locked_until is not None:
        return DomainError(
            "otp_invalid",
            "Too many wrong codes in a row: try again after "
            f"{locked_until:%H:%M:%S} UTC with a fresh code.",
            field="otp",
        )
    return DomainError(
        "otp_invalid",
        "That code is wrong, expired or already used: enter the next code your authenticator "
        "app shows.",
        field="otp",
    )


def authenticator_enrolment_valid(check: Check) -> DomainError | None:
    """A new authenticator is confirmed only with the account's password, typed again, and a
    code it produced; a confirmed one is replaced only by an installation admin (who removes
    the old one), so a stolen session cannot swap in the thief's phone."""
    from django_otp.oath import TOTP
    from django_otp.plugins.otp_totp.models import TOTPDevice

    if not check.facts.get("password_ok"):
        return DomainError(
            "validation_error", "password: your password is wrong.", field="password"
        )
    if TOTPDevice.objects.filter(user=check.actor, confirmed=True).exists():
        return DomainError(
            "validation_error",
            "You already have an authenticator. If it is lost, ask an installation admin to "
            "remove it (Users page), then enrol again.",
        )
    totp = TOTP(bytes.fromhex(check.facts["key"]))
    try:
        code = int(str(check.facts.get("otp") or "").strip())
    except ValueError:
        code = -1
    if code < 0 or not totp.verify(code, tolerance=1):
        return DomainError(
            "otp_invalid",
            "That code does not match: check the app's clock and enter the code it shows now.",
            field="otp",
        )
    # The code used here is spent: approvals need a later one.
    check.facts["last_t"] = totp.t()
    return None


def own_request(check: Check) -> DomainError | None:
    approval: Approval = check.facts["approval"]
    if approval.requested_by_id != check.actor.pk:
        return DomainError(
            "permission_denied", "Only the person who asked for it can cancel this request."
        )
    return None


def active_elevation(check: Check) -> DomainError | None:
    approval: Approval = check.facts["approval"]
    if not approval.is_active_elevation(check.now):
        return DomainError(
            "approval_not_pending", "This elevation is not active: there is nothing to revoke."
        )
    return None


def grant_not_for_own_account(check: Check) -> DomainError | None:
    """The account a grant gives power to never decides it (SPEC 3.9), even as a security
    admin already: a second person vouches for every grant of power."""
    approval: Approval = check.facts["approval"]
    if approval.account_id is not None and approval.account_id == check.actor.pk:
        return DomainError(
            "self_grant",
            "This grant gives power to your own account: another security admin must decide it.",
        )
    return None


def grant_requester_still_installation_admin(check: Check) -> DomainError | None:
    """Re-checked when the grant is decided: a superuser who lost that status (or whose account
    was switched off) since asking no longer vouches for it."""
    approval: Approval = check.facts["approval"]
    if approval.kind != Approval.Kind.USER_ROLE_GRANT or approval.account_id is None:
        return DomainError("validation_error", "This approval does not grant an account power.")
    requester = approval.requested_by
    if not (requester.is_active and requester.is_superuser):
        return DomainError(
            "requester_not_superuser",
            f"{requester.get_username()}, who asked for this grant, is no longer an active "
            "superuser: deny it, and ask a current superuser to file it again if it is needed.",
        )
    return None


def account_power_unchanged_by_shell(check: Check) -> DomainError | None:
    """``manage.py adduser`` bootstraps new accounts; the server's shell never raises an
    existing account's power, which only a ``user_role_grant`` approval does."""
    if check.actor is None and check.facts.get("grant"):
        return DomainError(
            "permission_denied",
            "An existing account gains the security_admin role or superuser status only through "
            "a user_role_grant approval: a superuser asks on the Users page or in the API, and "
            "another security admin decides.",
        )
    return None


def password_set_by_owner_of_power(check: Check) -> DomainError | None:
    """Whoever sets a password holds the account. Setting the password of another account that
    has power (the security_admin role or superuser status) would hand that power to one
    person, so only the account's owner changes it (or the server's shell, the bootstrap)."""
    account = check.facts.get("account")
    if not check.facts.get("password_change") or account is None or check.actor is None:
        return None
    if account.pk == check.actor.pk or not check.facts.get("account_has_power"):
        return None
    return DomainError(
        "permission_denied",
        f"{account.get_username()} holds power (security_admin or superuser): only its owner "
        "changes its password. Lower the account first if it is to change hands.",
        field="password",
    )


IMMUTABLE_POLICY_KINDS = {"recovery_services", "archive"}
RETENTION_ONLY_GROWS = (
    "This vault is immutable: retention can only grow. Create a new policy with longer "
    "retention instead."
)


def retention_not_shortened(check: Check) -> DomainError | None:
    """SPEC 3.2: Recovery Services and archive vaults refuse shorter retention when immutable;
    Backup vaults allow it (existing points keep their expiry)."""
    vault = check.vault
    shorter = check.facts.get("retention_shorter") or []
    if vault is None or not vault.is_immutable or not shorter:
        return None
    if vault.kind not in IMMUTABLE_POLICY_KINDS:
        return None
    return DomainError("immutable_vault", f"{RETENTION_ONLY_GROWS} ({' '.join(shorter)})")


def no_suspended_items_for_retention_increase(check: Check) -> DomainError | None:
    suspended = check.facts.get("suspended_items", 0)
    if check.facts.get("retention_longer") and suspended:
        return DomainError(
            "retention_suspended_items",
            f"{suspended} item(s) on this policy have their backups suspended (protection "
            "stopped, data retained): resume or move them before increasing retention.",
        )
    return None


def _point_on_locked_vault(check: Check) -> Any:
    """The point as seen with the vault row locked for this decision, so a concurrent change
    of immutability is never missed."""
    point = check.facts["point"]
    if check.vault is not None:
        point.vault = check.vault
    return point


def point_not_protected(check: Check) -> DomainError | None:
    point = _point_on_locked_vault(check)
    if point.is_protected(check.now):
        return DomainError(
            "immutable_vault",
            f"This vault is immutable: recovery point {point.pk} is kept until "
            f"{point.expires_at:%Y-%m-%d %H:%M} UTC and cannot be deleted before then.",
        )
    return None


def expiry_not_shortened(check: Check) -> DomainError | None:
    point = _point_on_locked_vault(check)
    if check.facts["new_expiry"] < point.expires_at and point.is_protected(check.now):
        return DomainError(
            "immutable_vault",
            "This vault is immutable: a recovery point's retention can only grow, never "
            f"shrink below {point.expires_at:%Y-%m-%d %H:%M} UTC.",
        )
    return None


def point_has_expired(check: Check) -> DomainError | None:
    point = check.facts["point"]
    if not point.is_expired(check.now):
        return DomainError(
            "point_not_expired", f"Recovery point {point.pk} has not reached its expiry yet."
        )
    if point.is_soft_deleted(check.now):
        return DomainError(
            "point_not_expired",
            f"Recovery point {point.pk} is soft-deleted until "
            f"{point.soft_deleted_until:%Y-%m-%d %H:%M} UTC: it is purged only then.",
        )
    return None


def item_data_deletable(check: Check) -> DomainError | None:
    vault = check.vault
    unexpired = check.facts.get("unexpired_points", 0)
    if vault is not None and vault.is_immutable and unexpired:
        return DomainError(
            "immutable_vault",
            f"This vault is immutable: this would delete {unexpired} unexpired recovery "
            "point(s). Their data can go only once they have expired; to stop backups now, "
            "stop protection and retain the data.",
        )
    return None


def policy_not_in_use(check: Check) -> DomainError | None:
    in_use = check.facts.get("items_using", 0)
    if in_use:
        return DomainError(
            "policy_in_use",
            f"{in_use} protected item(s) use this policy: move them to another policy first.",
        )
    return None


def no_enhanced_to_standard(check: Check) -> DomainError | None:
    if check.facts.get("old_kind") == "enhanced" and check.facts.get("new_kind") == "standard":
        return DomainError(
            "validation_error",
            "policy: an item on an enhanced policy cannot move back to a standard policy.",
            field="policy",
        )
    return None


def _weakens(check: Check) -> bool:
    return bool(check.facts.get("weaker"))


def soft_delete_not_always_on(check: Check) -> DomainError | None:
    vault = check.vault
    if vault is None or vault.soft_delete_state != "always_on":
        return None
    if check.operation == "soft_delete_retention" and not _soft_delete_shortens(check):
        return None
    return DomainError(
        "soft_delete_always_on",
        f"Soft delete is always-on for vault {vault.name}: it cannot be turned off and its "
        "retention can only grow.",
    )


def purge_count_confirmed(check: Check) -> DomainError | None:
    expected = check.facts.get("purge_count", 0)
    if check.facts.get("confirm_purge_count") != expected:
        return DomainError(
            "confirmation_mismatch",
            f"Disabling soft delete purges {expected} soft-deleted item(s) for good: confirm "
            f"by giving that number ({expected}).",
            field="confirm_purge_count",
        )
    return None


def item_is_soft_deleted(check: Check) -> DomainError | None:
    item = check.facts["item"]
    if item.protection_state != "soft_deleted":
        return DomainError(
            "validation_error", f"Item {item.name} is not soft-deleted.", field="item"
        )
    return None


def elevation_is_own_and_active(check: Check) -> DomainError | None:
    approval: Approval = check.facts["approval"]
    if approval.requested_by_id != check.actor.pk:
        return DomainError("permission_denied", "Only its holder can give up an elevation.")
    return active_elevation(check)


def guard_not_in_use(check: Check) -> DomainError | None:
    """A guard that protects vaults is not deleted (SPEC 3.4): remove it from them first."""
    if not check.facts.get("delete"):
        return None
    guard = check.facts.get("guard")
    if guard is None and check.facts.get("approval") is not None:
        guard = check.facts["approval"].guard
    if guard is None:
        return None
    names = sorted(guard.vaults.values_list("name", flat=True))
    if names:
        return DomainError(
            "guard_in_use",
            f"Resource Guard {guard.name} protects {len(names)} vault(s) ({', '.join(names[:5])}"
            f"{', ...' if len(names) > 5 else ''}): remove it from them first (each removal is "
            "itself protected by the guard).",
        )
    return None


def _replaces_guard(check: Check) -> bool:
    """Judged on the vault row locked for this decision, not the caller's copy: a copy read
    before a guard was put on the vault would make a replacement look like a first guard."""
    vault, guard = check.vault, check.facts.get("guard")
    return (
        vault is not None
        and vault.resource_guard_id is not None
        and (guard is None or vault.resource_guard_id != guard.pk)
    )


def _soft_delete_shortens(check: Check) -> bool:
    """Whether the soft-delete retention asked for is shorter than the locked row's (not the
    caller's copy, which may predate a longer one)."""
    vault, days = check.vault, check.facts.get("retention_days")
    return vault is not None and days is not None and days < vault.soft_delete_retention_days


def _shortens(check: Check) -> bool:
    return bool(check.facts.get("retention_shorter"))


def _grants_power_directly(check: Check) -> bool:
    return bool(check.facts.get("direct_power"))


# --- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    name: str
    capability: str
    rules: tuple[Rule, ...] = ()
    # The Resource Guard operation (SPEC 3.4) that protects this one, if any, and when it
    # applies only to some calls (e.g. a policy edit that weakens), the condition.
    mua: str | None = None
    mua_when: Callable[[Check], bool] | None = None
    label: str = ""
    # The security alert (SPEC 3.8) an allowed call raises, and when, if only sometimes.
    alert: str | None = None
    alert_when: Callable[[Check], bool] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("vault_create", "manage", label="Create a vault"),
        Operation("vault_update", "manage", label="Change a vault's properties"),
        Operation(
            "vault_delete",
            "manage",
            rules=(no_unexpired_points_in_immutable_vault, vault_is_empty),
            mua="delete_vault",
            label="Delete a vault",
        ),
        Operation(
            "immutability_enable",
            "manage",
            rules=(vault_not_locked,),
            label="Enable immutability",
        ),
        Operation(
            "immutability_disable",
            "manage",
            rules=(vault_not_locked,),
            mua="disable_immutability",
            label="Disable immutability",
            alert="immutability_disabled",
        ),
        Operation(
            "immutability_lock_request",
            "manage",
            rules=(vault_not_locked, confirmation_matches, second_factor),
            label="Ask to lock immutability",
        ),
        Operation(
            "immutability_lock",
            "approve",
            rules=(vault_not_locked,),
            label="Lock immutability",
        ),
        Operation("policy_create", "manage", label="Create a backup policy"),
        Operation(
            "policy_update",
            "manage",
            rules=(retention_not_shortened, no_suspended_items_for_retention_increase),
            mua="modify_policy_weaken",
            mua_when=_weakens,
            label="Change a backup policy",
            alert="policy_retention_reduced",
            alert_when=_shortens,
        ),
        Operation("policy_delete", "manage", rules=(policy_not_in_use,), label="Delete a policy"),
        Operation("item_protect", "manage", label="Protect an item"),
        Operation(
            "item_change_policy",
            "manage",
            rules=(no_enhanced_to_standard, retention_not_shortened),
            mua="modify_protection_weaken",
            mua_when=_weakens,
            label="Change an item's policy",
            alert="protection_retention_reduced",
            alert_when=_shortens,
        ),
        Operation(
            "protection_stop_retain",
            "manage",
            mua="stop_protection_retain_data",
            label="Stop protection, retain data",
        ),
        Operation(
            "protection_stop_delete",
            "manage",
            rules=(item_data_deletable,),
            mua="stop_protection_delete_data",
            label="Stop protection, delete data",
            alert="backup_data_deleted",
        ),
        Operation("protection_resume", "manage", label="Resume protection"),
        Operation(
            "point_delete",
            "manage",
            rules=(point_not_protected,),
            mua="delete_recovery_point",
            label="Delete a recovery point",
            alert="backup_data_deleted",
        ),
        Operation(
            "point_retain_until",
            "manage",
            rules=(expiry_not_shortened,),
            # A shorter date is a delete that takes longer: the same guard operation.
            mua="delete_recovery_point",
            mua_when=_shortens,
            label="Change a recovery point's retain-until date",
            alert="point_retention_reduced",
            alert_when=_shortens,
        ),
        Operation("point_record", "system", label="Record a recovery point"),
        # Expiry is always allowed: immutability never keeps data past its expiry.
        Operation("point_expire", "system", rules=(point_has_expired,), label="Expire a point"),
        Operation(
            "soft_delete_enable",
            "manage",
            rules=(soft_delete_not_always_on,),
            label="Enable soft delete",
        ),
        Operation(
            "soft_delete_disable",
            "manage",
            rules=(soft_delete_not_always_on, item_data_deletable, purge_count_confirmed),
            mua="disable_soft_delete",
            label="Disable soft delete",
            alert="soft_delete_disabled",
        ),
        Operation(
            "soft_delete_retention",
            "manage",
            rules=(soft_delete_not_always_on,),
            mua="disable_soft_delete",
            mua_when=_soft_delete_shortens,
            label="Change soft delete retention",
        ),
        Operation(
            "soft_delete_always_on_request",
            "manage",
            rules=(soft_delete_not_always_on, confirmation_matches, second_factor),
            label="Ask to make soft delete always-on",
        ),
        Operation(
            "soft_delete_always_on",
            "approve",
            rules=(soft_delete_not_always_on,),
            label="Make soft delete always-on",
        ),
        Operation(
            "item_purge_warn",
            "system",
            label="Warn of an upcoming purge",
            alert="upcoming_purge",
        ),
        Operation("item_undelete", "manage", rules=(item_is_soft_deleted,), label="Undelete"),
        Operation(
            "item_purge",
            "system",
            rules=(item_data_deletable,),
            label="Purge a soft-deleted item",
            alert="purge_complete",
        ),
        Operation(
            "vault_guard_set",
            "manage",
            mua="disable_mua",
            mua_when=_replaces_guard,
            label="Protect a vault with a Resource Guard",
        ),
        Operation(
            "vault_guard_remove",
            "manage",
            rules=(guard_kept_while_locked,),
            mua="disable_mua",
            label="Remove the Resource Guard from a vault",
            alert="mua_removed",
        ),
        Operation("guard_create", "manage_guards", label="Create a Resource Guard"),
        # Strengthening only: adding protected operations or a description.
        Operation("guard_update", "manage_guards", label="Change a Resource Guard"),
        # Removing protected operations or deleting a guard is a lock action (SPEC 3.4).
        Operation(
            "guard_weaken_request",
            "manage_guards",
            rules=(guard_not_in_use, second_factor),
            label="Ask to weaken or delete a Resource Guard",
            alert="guard_weaken_requested",
        ),
        Operation(
            "guard_weaken",
            "approve",
            rules=(guard_not_in_use,),
            label="Weaken or delete a Resource Guard",
        ),
        Operation(
            "elevation_request",
            "manage",
            rules=(second_factor,),
            label="Request access on a Resource Guard",
        ),
        Operation(
            "elevation_release",
            "view",
            rules=(elevation_is_own_and_active,),
            label="Give up an elevation",
        ),
        Operation(
            "approval_approve",
            "approve",
            rules=(approval_pending, not_own_request, second_factor),
            label="Approve a request",
        ),
        Operation(
            "approval_deny",
            "approve",
            rules=(approval_pending, not_own_request, second_factor),
            label="Deny a request",
        ),
        Operation(
            "authenticator_enrol",
            "view",
            rules=(authenticator_enrolment_valid,),
            label="Enrol a two-factor authenticator",
        ),
        Operation("approval_cancel", "view", rules=(own_request, approval_pending), label="Cancel"),
        Operation("approval_expire", "system", label="Expire a pending request"),
        Operation(
            "approval_revoke", "approve", rules=(active_elevation,), label="Revoke an elevation"
        ),
        # Jobs (SPEC 3.8): backups, restores, verification, tier moves and rehydration.
        # Backups and restores are always allowed under immutability (SPEC 3.2).
        Operation("backup_run", "operate", label="Run an on-demand backup"),
        Operation("backup_schedule", "system", label="Schedule a backup"),
        Operation("restore_start", "operate", label="Start a restore"),
        Operation("verify_start", "operate", label="Verify a recovery point"),
        Operation("verify_schedule", "system", label="Schedule a verification"),
        Operation("point_rehydrate", "operate", label="Rehydrate a point from archive"),
        # A tier move keeps the point's expiry, so immutability allows it (SPEC 3.2).
        Operation("point_tier_move", "system", label="Move a point to the archive tier"),
        Operation("point_snapshot_lapse", "system", label="End a point's instant restore"),
        Operation("point_rehydration_end", "system", label="End a point's rehydration"),
        Operation("point_mark_corrupt", "system", label="Mark a point corrupt"),
        Operation("point_mark_verified", "system", label="Record a point's verification"),
        Operation("storage_lock_apply", "system", label="Lock a vault's objects in storage"),
        Operation("lock_verify_start", "operate", label="Verify a vault's storage locks"),
        Operation("lock_verify_schedule", "system", label="Schedule a storage lock check"),
        Operation(
            "point_lock_verified", "system", label="Record a point's storage lock as read back"
        ),
        Operation("point_missing_found", "system", label="Keep point data whose row is missing"),
        Operation("job_alerts_mute", "manage", label="Mute or unmute a vault's job alerts"),
        Operation("alert_acknowledge", "respond", label="Acknowledge an alert"),
        Operation("alert_resolve", "respond", label="Resolve an alert"),
        # Installation administration: superusers, or the server's own shell commands. A grant
        # of power by a person is a pending user_role_grant (SPEC 3.9); from the shell
        # (``adduser``, the bootstrap) a new account gets it at once, with a security alert.
        Operation(
            "user_create",
            "installation",
            label="Create a user",
            alert="account_power_granted",
            alert_when=_grants_power_directly,
        ),
        Operation(
            "user_update",
            "installation",
            rules=(account_power_unchanged_by_shell, password_set_by_owner_of_power),
            label="Change a user's role or status",
        ),
        Operation(
            "user_role_grant",
            "approve",
            rules=(grant_not_for_own_account, grant_requester_still_installation_admin),
            label="Grant an account power",
            alert="account_power_granted",
        ),
        Operation(
            "authenticator_reset",
            "installation",
            label="Remove an account's authenticator",
            alert="authenticator_removed",
        ),
        # Every account's own API tokens; the key is never written anywhere but the answer.
        Operation(
            "password_change",
            "account",
            rules=(current_password_given,),
            label="Change your own password",
        ),
        Operation("api_token_issue", "account", label="Issue an API token"),
        Operation("api_token_revoke", "account", label="Revoke an API token"),
    )
}

# --- where the call came from, for the audit record ------------------------------------------

_entry_point: contextvars.ContextVar[str] = contextvars.ContextVar("entry_point", default="shell")


@contextmanager
def entry_point(name: str) -> Iterator[None]:
    token = _entry_point.set(name)
    try:
        yield
    finally:
        _entry_point.reset(token)


def current_entry_point() -> str:
    return _entry_point.get()


# --- the gate -------------------------------------------------------------------------------


def _role_check(op: Operation, actor: Any) -> DomainError | None:
    if op.capability == "installation" and actor is None and current_entry_point() == "command":
        return None
    if op.capability == "installation":
        op = Operation(op.name, "superuser", label=op.label)
    if op.capability == "system":
        return (
            None
            if actor is None
            else DomainError(
                "permission_denied", f"{op.label} is done by Holdfast itself, not by a person."
            )
        )
    if actor is None or not has_capability(actor, op.capability):
        return DomainError(
            "permission_denied",
            f"Your role does not allow this operation ({op.label or op.name}).",
        )
    return None


def _mua_check(op: Operation, check: Check) -> tuple[DomainError | None, Approval | None]:
    """Refuse a guarded operation unless the actor holds an active elevation on the guard."""
    vault = check.vault
    if op.mua is None or vault is None or vault.resource_guard_id is None:
        return None, None
    if op.mua_when is not None and not op.mua_when(check):
        return None, None
    guard = vault.resource_guard
    if guard is None or not guard.protects(op.mua):
        return None, None
    elevations = Approval.objects.filter(
        kind=Approval.Kind.ELEVATION,
        status=Approval.Status.APPROVED,
        guard=guard,
        requested_by=check.actor,
        active_until__gt=check.now,
    ).order_by("-active_until")
    elevation = elevations.first()
    if elevation is None:
        return (
            DomainError(
                "mua_required",
                "Unlock privilege access is needed for this operation: it is protected by "
                f"Resource Guard {guard.name}. Request access on that guard and ask a security "
                "admin to approve it.",
            ),
            None,
        )
    return None, elevation


def decide(op_name: str, *, actor: Any, vault: Vault | None, facts: dict[str, Any]) -> Check:
    """Run every check of ``op_name`` without changing anything (for previews and dry runs)."""
    op = OPERATIONS[op_name]
    check = Check(op_name, actor, vault, facts, clock.now())
    error = _role_check(op, actor)
    for rule in op.rules:
        if error is not None:
            break
        error = rule(check)
    if error is None:
        error, elevation = _mua_check(op, check)
        facts["_elevation"] = elevation
    if error is not None:
        raise error
    return check


def _audit(
    op_name: str,
    *,
    actor: Any,
    vault: Vault | None,
    vault_name: str,
    target: str,
    now: datetime,
    error: DomainError | None,
    before: dict[str, Any],
    after: dict[str, Any],
    details: dict[str, Any],
) -> AuditRecord:
    """Append the record to the audit hash chain (``portal/audit.py``), in this transaction."""
    from .audit import seal

    record = AuditRecord(
        at=now,
        actor=actor,
        actor_name=getattr(actor, "username", "") or "holdfast",
        operation=op_name,
        outcome=AuditRecord.Outcome.REFUSED if error else AuditRecord.Outcome.ALLOWED,
        code=error.code if error else "",
        reason=error.detail if error else "",
        vault_name=vault.name if vault is not None else vault_name,
        target=target[:255],
        source=current_entry_point(),
        before=before,
        after=after,
        details=details,
    )
    seal(record)
    record.save(force_insert=True)
    return record


def execute(
    op_name: str,
    *,
    actor: Any,
    change: Callable[[Check], T],
    vault: Vault | None = None,
    vault_name: str = "",
    target: str = "",
    facts: dict[str, Any] | None = None,
    before: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    after: Callable[[T], dict[str, Any]] | None = None,
    precheck: Callable[[Check], None] | None = None,
    refresh: Callable[[dict[str, Any]], None] | None = None,
) -> T:
    """Check ``op_name`` for ``actor`` on ``vault``, then run ``change`` and audit it.

    ``change`` receives the :class:`Check`, whose ``vault`` is the row locked for this
    transaction. ``precheck`` may raise a ``validation_error`` that depends on locked state.
    ``refresh`` re-reads (and locks) the facts inside the transaction, after the vault row, so
    two callers racing on the same row are decided one after the other; ``before`` may then be
    a function of those refreshed facts, so the audit record shows the row as it was judged.
    """
    facts = dict(facts or {})
    error: DomainError | None = None
    with transaction.atomic():
        if vault is not None and vault.pk is not None:
            vault = type(vault).objects.select_for_update().get(pk=vault.pk)
        if refresh is not None:
            refresh(facts)
        if callable(before):
            before_state = before(facts)
        elif before is not None:
            before_state = before
        else:
            before_state = vault.audit_state() if vault else {}
        try:
            check = decide(op_name, actor=actor, vault=vault, facts=facts)
            if precheck is not None:
                precheck(check)
        except DomainError as refusal:
            error = refusal
            if refusal.code in ALERTING_REFUSALS:
                raise_alert(
                    "operation_refused",
                    vault_name=vault.name if vault is not None else vault_name,
                    target=target,
                    message=f"{OPERATIONS[op_name].label or op_name} refused: {refusal.detail}",
                )
            _audit(
                op_name,
                actor=actor,
                vault=vault,
                vault_name=vault_name,
                target=target,
                now=clock.now(),
                error=error,
                before=before_state,
                after={},
                details={},
            )
        else:
            result = change(check)
            elevation = facts.get("_elevation")
            details: dict[str, Any] = {}
            if elevation is not None:
                details["elevation"] = elevation.pk
                details["guard"] = elevation.guard.name if elevation.guard else None
            op = OPERATIONS[op_name]
            if op.alert and (op.alert_when is None or op.alert_when(check)):
                who = getattr(actor, "username", "") or "Holdfast"
                raise_alert(
                    op.alert,
                    vault_name=check.vault.name if check.vault is not None else vault_name,
                    target=target,
                    message=f"{op.label} by {who} ({target}).",
                )
            if after is not None:
                after_state = after(result)
            elif check.vault is not None and check.vault.pk is not None:
                after_state = check.vault.audit_state()
            else:
                after_state = {}
            _audit(
                op_name,
                actor=actor,
                vault=check.vault,
                vault_name=vault_name,
                target=target,
                now=check.now,
                error=None,
                before=before_state,
                after=after_state,
                details=details,
            )
            return result
    # Raised outside the atomic block so the refusal's audit record is committed.
    assert error is not None
    raise error
