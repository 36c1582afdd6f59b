"""Vaults and their security settings (SPEC 3.1 to 3.3)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

VAULT_NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z][A-Za-z0-9-]{1,49}$",
    "A vault name is 2 to 50 letters, digits or hyphens, starting with a letter.",
)


class Vault(models.Model):
    class Kind(models.TextChoices):
        RECOVERY_SERVICES = "recovery_services", "Recovery Services vault"
        BACKUP = "backup", "Backup vault"
        ARCHIVE = "archive", "Archive vault"

    class Immutability(models.TextChoices):
        DISABLED = "disabled", "Disabled"
        ENABLED = "enabled", "Enabled"
        LOCKED = "locked", "Enabled and locked"

    class SoftDelete(models.TextChoices):
        DISABLED = "disabled", "Disabled"
        ENABLED = "enabled", "Enabled"
        ALWAYS_ON = "always_on", "Always-on"

    class SecurityLevel(models.TextChoices):
        EXCELLENT = "excellent", "Excellent"
        GOOD = "good", "Good"
        FAIR = "fair", "Fair"
        POOR = "poor", "Poor"

    name = models.CharField(max_length=50, unique=True, validators=[VAULT_NAME_VALIDATOR])
    kind = models.CharField(max_length=20, choices=Kind.choices)
    region = models.CharField(max_length=40)
    tags = models.JSONField(default=dict, blank=True)
    storage_location = models.CharField(max_length=500, blank=True)
    immutability = models.CharField(
        max_length=10, choices=Immutability.choices, default=Immutability.DISABLED
    )
    immutability_changed_at = models.DateTimeField(null=True, blank=True)
    soft_delete_state = models.CharField(
        max_length=10, choices=SoftDelete.choices, default=SoftDelete.ENABLED
    )
    soft_delete_retention_days = models.PositiveSmallIntegerField(
        default=14, validators=[MinValueValidator(14), MaxValueValidator(180)]
    )
    resource_guard = models.ForeignKey(
        "guards.ResourceGuard",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="vaults",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]
        permissions = [
            ("operate", "Run on-demand backups, restores and rehydration"),
            ("manage", "Create and change vaults, policies, protection and security settings"),
        ]
        indexes = [
            models.Index(fields=["immutability"], name="vault_immutability_idx"),
            models.Index(fields=["kind", "region"], name="vault_kind_region_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(soft_delete_retention_days__gte=14)
                & models.Q(soft_delete_retention_days__lte=180),
                name="vault_soft_delete_retention_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_immutable(self) -> bool:
        return self.immutability in {self.Immutability.ENABLED, self.Immutability.LOCKED}

    @property
    def is_locked(self) -> bool:
        return self.immutability == self.Immutability.LOCKED

    @property
    def soft_delete_on(self) -> bool:
        return self.soft_delete_state != self.SoftDelete.DISABLED

    @property
    def data_lock(self) -> str:
        """The data-lock column of every vault list: "Locked" for locked vaults."""
        return "Locked" if self.is_locked else ""

    @property
    def security_level(self) -> str:
        if (
            self.is_locked
            and self.soft_delete_state == self.SoftDelete.ALWAYS_ON
            and self.resource_guard_id is not None
        ):
            return self.SecurityLevel.EXCELLENT
        if self.is_immutable and self.soft_delete_on:
            return self.SecurityLevel.GOOD
        if self.soft_delete_on:
            return self.SecurityLevel.FAIR
        return self.SecurityLevel.POOR

    def unexpired_point_count(self, now: datetime) -> int:
        """Recovery points whose expiry lies in the future (their model arrives with policies)."""
        points = getattr(self, "recovery_points", None)
        return points.filter(expires_at__gt=now).count() if points is not None else 0

    def audit_state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "region": self.region,
            "immutability": self.immutability,
            "soft_delete": {
                "state": self.soft_delete_state,
                "retention_days": self.soft_delete_retention_days,
            },
            "resource_guard": self.resource_guard.name if self.resource_guard_id else None,
        }
