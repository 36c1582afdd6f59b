"""The four roles of SPEC section 1 as Django groups, and the capabilities each grants.

A capability comes from the user's role alone (SPEC 1): never from ``is_superuser`` and never
from permissions granted to the user or added to a group (through the Django admin or SQL).
The table below is code, not data, so nobody changes what a role can do by editing rows.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission

READER, OPERATOR, BACKUP_ADMIN, SECURITY_ADMIN = (
    "reader",
    "operator",
    "backup_admin",
    "security_admin",
)
ROLES = (READER, OPERATOR, BACKUP_ADMIN, SECURITY_ADMIN)
ROLE_LABELS = {
    READER: "Reader",
    OPERATOR: "Operator",
    BACKUP_ADMIN: "Backup admin",
    SECURITY_ADMIN: "Security admin",
}
# Roles whose grant is itself four-eyes (SPEC 3.9); superuser status is the other power.
POWER_ROLES = frozenset({SECURITY_ADMIN})

# A capability is what the gate asks for. The permissions are kept on the groups for anyone
# reading the database, but the checks below read ROLE_CAPABILITIES, never the permissions.
CAPABILITY_PERMISSIONS = {
    "view": "vaults.view_vault",
    "operate": "vaults.operate",
    "manage": "vaults.manage",
    "approve": "guards.approve",
    "manage_guards": "guards.manage_guards",
}
ROLE_CAPABILITIES = {
    READER: ("view",),
    OPERATOR: ("view", "operate"),
    BACKUP_ADMIN: ("view", "operate", "manage"),
    SECURITY_ADMIN: ("view", "approve", "manage_guards"),
}
# Cached on the user object for the request, like Django's own permission cache.
_ROLES_CACHE = "_holdfast_roles"


def ensure_roles(**kwargs: Any) -> None:
    """Create the role groups with their permissions (run after every migrate)."""
    # post_migrate runs app by app; make sure every app's permissions exist first.
    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0)
    for role, capabilities in ROLE_CAPABILITIES.items():
        group, _ = Group.objects.get_or_create(name=role)
        perms = []
        for capability in capabilities:
            app_label, codename = CAPABILITY_PERMISSIONS[capability].split(".")
            perm = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if perm is not None:
                perms.append(perm)
        group.permissions.set(perms)


def roles_of(user: Any) -> tuple[str, ...]:
    """The role groups the user belongs to, in ROLES order (one, unless rows were edited)."""
    if not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
        return ()
    cached = getattr(user, _ROLES_CACHE, None)
    if cached is None:
        names = {g.name for g in user.groups.all()}
        cached = tuple(role for role in ROLES if role in names)
        setattr(user, _ROLES_CACHE, cached)
    return cached


def forget_roles(user: Any) -> None:
    """Drop the cached roles after the user's groups changed."""
    if hasattr(user, _ROLES_CACHE):
        delattr(user, _ROLES_CACHE)


def role_of(user: Any) -> str:
    """The user's role name; "superuser" for an installation admin without one."""
    roles = roles_of(user)
    if roles:
        return roles[0]
    return "superuser" if getattr(user, "is_superuser", False) else ""


def capabilities_of(user: Any) -> frozenset[str]:
    """What the user's role allows. An account in more than one role group (only possible by
    writing around the services) gets only what every one of its roles allows: fail closed,
    so nobody is both the backup admin who asks and the security admin who approves."""
    roles = roles_of(user)
    if not roles:
        return frozenset()
    allowed = set(ROLE_CAPABILITIES[roles[0]])
    for role in roles[1:]:
        allowed &= set(ROLE_CAPABILITIES[role])
    return frozenset(allowed)


def has_capability(user: Any, capability: str) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if capability == "superuser":
        # Installation administration (accounts), never a capability of any role.
        return bool(user.is_superuser)
    if capability == "account":
        # What any active account does for itself (its own API token, its authenticator).
        return True
    if capability == "read_accounts":
        # SPEC 5: superusers manage accounts; security admins read them.
        return bool(user.is_superuser) or "approve" in capabilities_of(user)
    if capability == "respond":
        # Acknowledging and resolving alerts: whoever acts on them, operators and up, or
        # security admins.
        return has_capability(user, "operate") or has_capability(user, "approve")
    if capability not in CAPABILITY_PERMISSIONS:
        return False
    return capability in capabilities_of(user)
