"""Resource Guards (SPEC 3.4): owned by security admins, they protect a vault's operations."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

# The same rule as vault names: a guard's name is a URL segment on every page and API path.
GUARD_NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z][A-Za-z0-9-]{1,49}$",
    "A guard name is 2 to 50 letters, digits or hyphens, starting with a letter.",
)


class ResourceGuard(models.Model):
    class Operation(models.TextChoices):
        DISABLE_SOFT_DELETE = "disable_soft_delete", "Disable soft delete or shorten its retention"
        DISABLE_MUA = "disable_mua", "Remove the Resource Guard from a vault"
        DISABLE_IMMUTABILITY = "disable_immutability", "Disable immutability"
        MODIFY_POLICY_WEAKEN = "modify_policy_weaken", "Weaken a backup policy"
        MODIFY_PROTECTION_WEAKEN = "modify_protection_weaken", "Move an item to a weaker policy"
        STOP_PROTECTION_DELETE_DATA = "stop_protection_delete_data", "Stop protection, delete data"
        STOP_PROTECTION_RETAIN_DATA = "stop_protection_retain_data", "Stop protection, retain data"
        DELETE_RECOVERY_POINT = "delete_recovery_point", "Delete a recovery point"
        DELETE_VAULT = "delete_vault", "Delete the vault"
        STOP_REPLICATION = "stop_replication", "Stop replication to the replica vault"

    MANDATORY = frozenset({Operation.DISABLE_SOFT_DELETE, Operation.DISABLE_MUA})

    name = models.CharField(max_length=50, unique=True, validators=[GUARD_NAME_VALIDATOR])
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_guards"
    )
    protected_operations = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("approve", "Approve or deny lock approvals and elevation requests"),
            ("manage_guards", "Create and change Resource Guards"),
        ]

    def __str__(self) -> str:
        return self.name

    def protects(self, operation: str) -> bool:
        return operation in self.MANDATORY or operation in self.protected_operations

    def audit_state(self) -> dict[str, object]:
        return {
            "name": self.name,
            "protected_operations": sorted(self.protected_operations),
            "description": self.description,
        }
