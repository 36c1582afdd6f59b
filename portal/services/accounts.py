"""Accounts (SPEC 3.9): creating and changing them, grants of power (a pending
``user_role_grant``), two-factor authenticators, and API tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django_otp.plugins.otp_totp.models import TOTPDevice
from knox.models import AuthToken

from .. import gate
from ..gate import Check, DomainError
from ..models import Approval
from ..roles import POWER_ROLES, READER, ROLES, SECURITY_ADMIN, forget_roles, role_of


def password_change(*, actor: Any, new_password: str, password_ok: bool) -> Any:
    """The owner sets their own password (``password_ok``: the caller checked the current one
    through ``authenticate``, so sign-in throttling counts wrong ones). From then on no one else
    holds it, which approvals look at (``gate_rules.password_setter``). Other sessions and API
    tokens of the account end."""

    def precheck(check: Check) -> None:
        error = _password_error(new_password, actor)
        if error is not None:
            raise DomainError(error.code, "new_" + error.detail, field="new_password")

    def change(check: Check) -> Any:
        actor.set_password(new_password)
        actor.save(update_fields=["password"])
        AuthToken.objects.filter(user=actor).delete()
        return actor

    return gate.execute(
        "password_change",
        actor=actor,
        target=f"user:{actor.get_username()}",
        facts={"password_ok": password_ok},
        before={},
        precheck=precheck,
        change=change,
        after=lambda _: {"password": "changed"},
    )


def authenticator_enrol(*, actor: Any, key: str, otp: str, password_ok: bool) -> Any:
    """Confirm a TOTP authenticator (hex ``key``) for ``actor`` with a code it produced.

    ``password_ok`` says the caller re-checked the account's password (through
    ``authenticate``, so login throttling counts wrong ones). The code is spent on enrolment.
    """

    def change(check: Check) -> TOTPDevice:
        TOTPDevice.objects.filter(user=actor, confirmed=False).delete()
        return TOTPDevice.objects.create(
            user=actor,
            name="authenticator",
            key=key,
            confirmed=True,
            last_t=check.facts["last_t"],
        )

    return gate.execute(
        "authenticator_enrol",
        actor=actor,
        target=f"user:{actor.get_username()}",
        facts={"key": key, "otp": otp, "password_ok": password_ok},
        before={},
        change=change,
        after=lambda device: {"device": device.pk, "confirmed": True},
    )


@dataclass(frozen=True)
class AccountChange:
    """What a change of an account did: the account as it is now, and the pending
    ``user_role_grant`` approval for the power it asked for but does not hold yet."""

    user: Any
    grant: Approval | None = None


def _role_error(role: str) -> DomainError:
    return DomainError(
        "validation_error", f"role: must be one of {', '.join(ROLES)}.", field="role"
    )


def _password_error(password: str, user: Any) -> DomainError | None:
    try:
        validate_password(password, user)
    except ValidationError as exc:
        return DomainError(
            "validation_error", "password: " + " ".join(exc.messages), field="password"
        )
    return None


def _set_role(user: Any, role: str) -> None:
    user.groups.set([Group.objects.get(name=role)])
    forget_roles(user)


def _account_state(user: Any) -> dict[str, Any]:
    return {
        "role": role_of(user),
        "superuser": bool(user.is_superuser),
        "active": bool(user.is_active),
    }


def _file_grant(actor: Any, user: Any, asked: dict[str, Any], now: Any) -> Approval:
    """A pending grant of power (SPEC 3.9); asking again for the same returns that one."""
    pending = (
        Approval.objects.pending(now)
        .filter(kind=Approval.Kind.USER_ROLE_GRANT, account=user, payload=asked)
        .first()
    )
    return pending or Approval.objects.create(
        kind=Approval.Kind.USER_ROLE_GRANT,
        requested_by=actor,
        account=user,
        payload=asked,
        created_at=now,
        expires_at=now + settings.HOLDFAST_APPROVAL_TTL,
    )


def _grant_after(change: AccountChange) -> dict[str, Any]:
    after = _account_state(change.user)
    if change.grant is not None:
        after["grant"] = {"approval": change.grant.pk, **change.grant.payload}
    return after


def account_create(
    *,
    actor: Any,
    username: str,
    role: str,
    password: str,
    email: str = "",
    is_superuser: bool = False,
) -> AccountChange:
    """Create an account with one role (SPEC 3.9).

    A superuser asking for power (the ``security_admin`` role, or superuser status) gets the
    account without it, plus a pending ``user_role_grant`` approval that a security admin who is
    neither the requester nor the account decides. From the server's shell (``actor=None``,
    ``manage.py adduser``: the installation's bootstrap) a new account gets its power at once;
    that is audited, and once a security admin exists it raises the ``account_power_granted``
    security alert.
    """
    user_model = get_user_model()
    asked: dict[str, Any] = {}
    if role in POWER_ROLES:
        asked["role"] = role
    if is_superuser:
        asked["is_superuser"] = True
    direct = actor is None
    initial_role = role if direct or role not in POWER_ROLES else READER

    def precheck(check: Check) -> None:
        if role not in ROLES:
            raise _role_error(role)
        if not username or user_model.objects.filter(username=username).exists():
            raise DomainError(
                "validation_error",
                f"username: a user named {username!r} already exists."
                if username
                else "username: this field is required.",
                field="username",
            )
        error = _password_error(password, user_model(username=username, email=email))
        if error is not None:
            raise error
        # Past the bootstrap (once a security admin exists, who could have decided a grant),
        # power created from the shell raises the account_power_granted alert.
        check.facts["direct_power"] = (
            direct
            and bool(asked)
            and user_model.objects.filter(groups__name=SECURITY_ADMIN, is_active=True).exists()
        )

    def change(check: Check) -> AccountChange:
        user = user_model.objects.create_user(username=username, email=email, password=password)
        if direct and is_superuser:
            user.is_superuser = user.is_staff = True
            user.save(update_fields=["is_superuser", "is_staff"])
        _set_role(user, initial_role)
        grant = None if direct or not asked else _file_grant(actor, user, asked, check.now)
        return AccountChange(user=user, grant=grant)

    return gate.execute(
        "user_create",
        actor=actor,
        target=f"user:{username}",
        before={},
        precheck=precheck,
        change=change,
        after=_grant_after,
    )


def user_create(
    *,
    actor: Any,
    username: str,
    role: str,
    password: str,
    email: str = "",
    is_superuser: bool = False,
) -> Any:
    """:func:`account_create` for callers that want the account only (commands, seeding)."""
    return account_create(
        actor=actor,
        username=username,
        role=role,
        password=password,
        email=email,
        is_superuser=is_superuser,
    ).user


def account_update(
    *,
    actor: Any,
    user: Any,
    role: str | None = None,
    is_active: bool | None = None,
    is_superuser: bool | None = None,
    password: str | None = None,
) -> AccountChange:
    """Change an account's role, superuser status, activity or password (``None`` keeps it).

    Lowering (a role without power, losing superuser status, deactivation) takes effect at
    once; a deactivated account's API tokens are deleted. Gaining power (the ``security_admin``
    role, or superuser status) is a pending ``user_role_grant`` approval instead, and until it is
    approved the account keeps what it had. Only an account's owner sets the password of an
    account that holds power. Accounts are never deleted.
    """
    user_model = get_user_model()

    def refresh(facts: dict[str, Any]) -> None:
        locked = user_model.objects.select_for_update().get(pk=user.pk)
        current = role_of(locked)
        asked: dict[str, Any] = {}
        if role in POWER_ROLES and role != current:
            asked["role"] = role
        if is_superuser and not locked.is_superuser:
            asked["is_superuser"] = True
        facts.update(
            account=locked,
            grant=asked,
            password_change=password is not None,
            account_has_power=current in POWER_ROLES or locked.is_superuser,
        )

    def precheck(check: Check) -> None:
        account = check.facts["account"]
        if role is not None and role not in ROLES:
            raise _role_error(role)
        if account.pk == getattr(actor, "pk", None) and is_active is False:
            raise DomainError(
                "validation_error",
                "is_active: you cannot deactivate your own account.",
                field="is_active",
            )
        if password is not None:
            error = _password_error(password, account)
            if error is not None:
                raise error

    def change(check: Check) -> AccountChange:
        account = check.facts["account"]
        asked = check.facts["grant"]
        fields: list[str] = []
        if role is not None and role not in POWER_ROLES and role != role_of(account):
            _set_role(account, role)
        if is_superuser is False and account.is_superuser:
            account.is_superuser = account.is_staff = False
            fields += ["is_superuser", "is_staff"]
        if is_active is not None and is_active != account.is_active:
            account.is_active = is_active
            fields.append("is_active")
            if not is_active:
                AuthToken.objects.filter(user=account).delete()
        if password is not None:
            account.set_password(password)
            fields.append("password")
        if fields:
            account.save(update_fields=fields)
        grant = _file_grant(actor, account, asked, check.now) if asked else None
        forget_roles(user)
        return AccountChange(user=account, grant=grant)

    return gate.execute(
        "user_update",
        actor=actor,
        target=f"user:{user.get_username()}",
        before=_account_state(user),
        refresh=refresh,
        precheck=precheck,
        change=change,
        after=lambda result: {
            **_grant_after(result),
            **({"password": "changed"} if password is not None else {}),
        },
    )


def user_role_grant(*, actor: Any, approval: Approval, vault: Any = None) -> Any:
    """Give the account of an approved ``user_role_grant`` the power it asked for; run only by
    :func:`approval_approve`, in its transaction."""
    account_id = approval.account_id

    def change(check: Check) -> Any:
        # The rules refused a grant without an account before this runs.
        account = get_user_model().objects.select_for_update().get(pk=account_id or 0)
        if approval.payload.get("role"):
            _set_role(account, approval.payload["role"])
        if approval.payload.get("is_superuser"):
            account.is_superuser = account.is_staff = True
            account.save(update_fields=["is_superuser", "is_staff"])
        return account

    account = approval.account
    return gate.execute(
        "user_role_grant",
        actor=actor,
        target=f"user:{account.get_username() if account else account_id}",
        facts={"approval": approval},
        before=_account_state(account) if account else {},
        change=change,
        after=lambda a: {**_account_state(a), "approval": approval.pk},
    )


def authenticator_reset(*, actor: Any, user: Any) -> int:
    """Remove an account's TOTP authenticators (a lost phone) so its owner can enrol a new one,
    which needs the owner's password; raises the ``authenticator_removed`` security alert."""

    def change(check: Check) -> int:
        removed, _ = TOTPDevice.objects.filter(user=user).delete()
        return removed

    return gate.execute(
        "authenticator_reset",
        actor=actor,
        target=f"user:{user.get_username()}",
        before={"authenticators": TOTPDevice.objects.filter(user=user, confirmed=True).count()},
        change=change,
        after=lambda removed: {"removed": removed},
    )


@dataclass(frozen=True)
class IssuedToken:
    key: str
    expires_at: datetime | None


def api_token_issue(*, actor: Any) -> IssuedToken:
    """A new API token for ``actor`` (who just gave their password). Only its digest is kept:
    the key is in the returned value and nowhere else, not even the audit record."""

    def change(check: Check) -> IssuedToken:
        instance, key = AuthToken.objects.create(user=actor)
        return IssuedToken(key=key, expires_at=instance.expiry)

    return gate.execute(
        "api_token_issue",
        actor=actor,
        target=f"user:{actor.get_username()}",
        before={},
        change=change,
        after=lambda issued: {
            "expires_at": issued.expires_at.isoformat() if issued.expires_at else None
        },
    )


def api_token_revoke(*, actor: Any, token: Any) -> None:
    """End the API token ``actor`` signed this request with."""

    def change(check: Check) -> None:
        type(token).objects.filter(pk=token.pk, user=actor).delete()

    gate.execute(
        "api_token_revoke",
        actor=actor,
        target=f"user:{actor.get_username()}",
        before={},
        change=change,
        after=lambda _: {"revoked": True},
    )
