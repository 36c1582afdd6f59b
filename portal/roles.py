"""The four roles of SPEC section 1 as Django groups, and the capabilities each grants."""

from __future__ import annotations

from typing import Any

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

# A capability is what the gate asks for; each maps to one Django permission.
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


def ensure_roles(**kwargs: Any) -> None:
    """Create the role groups with their permissions (run after every migrate)."""
    from django.apps import apps
    from django.contrib.auth.management import create_permissions

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


def role_of(user: Any) -> str:
    """The user's role name; superusers are installation administrators."""
    if not getattr(user, "is_authenticated", False):
        return ""
    names = [g.name for g in user.groups.all() if g.name in ROLES]
    if names:
        return names[0]
    return "superuser" if user.is_superuser else ""


def has_capability(user: Any, capability: str) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if capability == "superuser":
        return bool(user.is_superuser)
    if capability == "respond":
        # Acknowledging and resolving alerts: whoever acts on them, operators and up, or
        # security admins.
        return has_capability(user, "operate") or has_capability(user, "approve")
    return bool(user.has_perm(CAPABILITY_PERMISSIONS[capability]))
