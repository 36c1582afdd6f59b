"""The absolute rules an operation of the gate may check (SPEC sections 3 and 4).

A rule is a function of the :class:`Check` (the operation, who asks, the vault row the gate
locked, the service's facts, the time) that returns the refusal, or None. Which operation
checks which rules is the table in ``portal/operations.py``; the gate runs them in
``portal/gate.py``. Rules read app rows only through the check (``check.vault``,
``check.facts``), so the kernel imports no app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db.models import Q
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import audit_link
from .errors import DomainError
from .models import Approval, AuditRecord
from .roles import has_capability

if TYPE_CHECKING:
    from vaults.models import Vault


@dataclass
class Check:
    """What a rule sees: the operation, who asks, the locked vault and the service's facts."""

    operation: str
    actor: Any
    vault: Vault | None
    facts: dict[str, Any]
    now: datetime
    label: str = ""  # the operation's label, for sentences


Rule = Callable[[Check], DomainError | None]


def vault_not_locked(check: Check) -> DomainError | None:
    if check.vault is not None and check.vault.is_locked:
        return DomainError(
            "immutability_locked",
            f"Immutability of vault {check.vault.name} is locked: it cannot be changed by anyone.",
        )
    return None


def replica_kept_while_locked(check: Check) -> DomainError | None:
    """SPEC 3.10: on a locked vault the replication cannot be removed, by anyone."""
    vault = check.vault
    if vault is not None and vault.is_locked and vault.replica_id is not None:
        return DomainError(
            "immutability_locked",
            f"Vault {vault.name} is locked: its replication to {vault.replica} cannot be "
            "removed by anyone. Its copies stay locked as its own points do.",
        )
    return None


def vault_not_a_replica(check: Check) -> DomainError | None:
    """SPEC 3.10: a replica vault goes only once its source no longer replicates to it."""
    vault = check.vault
    source = vault.replica_of if vault is not None else None
    if source is not None:
        return DomainError(
            "vault_not_empty",
            f"Vault {vault} is the replica of {source.name}: stop replication on {source.name} "
            "first (where its rules allow it).",
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


def approval_name_typed(check: Check) -> DomainError | None:
    """On the approval's page, approving a lock or a guard weakening asks the approver to type
    the vault's or the guard's name, as the requester did (the API passes no confirmation and
    is not asked: ``facts["confirmation"]`` is then None)."""
    typed = check.facts.get("confirmation")
    if typed is None:
        return None
    approval: Approval = check.facts["approval"]
    if approval.kind == Approval.Kind.LOCK_IMMUTABILITY and approval.vault is not None:
        name, what = approval.vault.name, "vault"
    elif approval.kind == Approval.Kind.GUARD_WEAKEN and approval.guard is not None:
        name, what = approval.guard.name, "Resource Guard"
    else:
        return None
    if typed.strip() != name:
        return DomainError(
            "confirmation_mismatch",
            f"Type the {what}'s exact name ({name}) to approve this irreversible change.",
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
    approval: Approval = check.facts["approval"]
    if approval.requested_by_id == check.actor.pk:
        return DomainError(
            "self_approval",
            "You asked for this yourself: another security admin must decide it.",
        )
    requester = approval.requested_by.get_username()
    approver = check.actor.get_username()
    administered = audit_link.newest_actor(
        Q(outcome=AuditRecord.Outcome.ALLOWED, operation__in=ACCOUNT_ADMINISTRATION)
        & (
            Q(actor_id=check.actor.pk, target=f"user:{requester}")
            | Q(actor_id=approval.requested_by_id, target=f"user:{approver}")
        )
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
    record: int | None = audit_link.newest_actor(
        Q(
            outcome=AuditRecord.Outcome.ALLOWED,
            target=f"user:{username}",
            operation__in=("user_create", "user_update", "password_change"),
        )
        & (~Q(operation="user_update") | Q(after__password="changed")),
        order=("-id",),
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
    if settings.HOLDFAST_APPROVER_2FA != "required":
        return None
    what = check.label.lower() if check.label else "this"
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
    for point in check.facts.get("points") or [check.facts["point"]]:  # one, or a sweep's batch
        if not point.is_expired(check.now):
            return DomainError("point_not_expired", f"Recovery point {point.pk} has not expired.")
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


def soft_delete_not_always_on(check: Check) -> DomainError | None:
    vault = check.vault
    if vault is None or vault.soft_delete_state != "always_on":
        return None
    if check.operation == "soft_delete_retention" and not soft_delete_shortens(check):
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


def soft_delete_shortens(check: Check) -> bool:
    """Whether the soft-delete retention asked for is shorter than the locked row's (not the
    caller's copy, which may predate a longer one)."""
    vault, days = check.vault, check.facts.get("retention_days")
    return vault is not None and days is not None and days < vault.soft_delete_retention_days


def schedule_kept_by_managers(check: Check) -> DomainError | None:
    """Cancelling a scheduled backup skips a backup the policy promised: the effect of
    stopping protection for that slot. So it takes who may stop protection (a backup admin),
    and the vault's guard protects it as ``stop_protection_retain_data`` (operations.py); an
    operator cancelling every slot as it starts would otherwise stop protection unguarded."""
    if check.facts.get("scheduled_backup") and not has_capability(check.actor, "manage"):
        return DomainError(
            "permission_denied",
            "Only a backup admin can cancel a scheduled backup: it skips a backup the policy "
            "promised. Cancel on-demand backups and restores, or ask a backup admin.",
        )
    return None
