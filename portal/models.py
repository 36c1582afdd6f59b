"""Cross-cutting records: the audit log and approvals (SPEC 3.5, 3.8)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn

import pgtrigger
from django.conf import settings
from django.db import models


class AppendOnlyError(Exception):
    """The audit log is append-only: nothing updates or deletes a record."""


class AuditQuerySet(models.QuerySet["AuditRecord"]):
    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError("audit records cannot be updated")

    def delete(self) -> NoReturn:  # type: ignore[override]
        raise AppendOnlyError("audit records cannot be deleted")


class AuditContent(models.Model):
    """A gate decision's fields, as the log (AuditRecord) and the decisions waiting to be
    linked into it (AuditPending) both hold them; the chain hashes exactly these
    (portal/audit_link.py, CONTENT_COLUMNS)."""

    class Outcome(models.TextChoices):
        ALLOWED = "allowed", "Allowed"
        REFUSED = "refused", "Refused"

    at = models.DateTimeField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_name = models.CharField(max_length=150)
    operation = models.CharField(max_length=64)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    code = models.CharField(max_length=64, blank=True)
    reason = models.TextField(blank=True)
    vault_name = models.CharField(max_length=50, blank=True)
    target = models.CharField(max_length=255, blank=True)
    source = models.CharField(max_length=16, blank=True)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        abstract = True


class AuditRecord(AuditContent):
    # The hash chain (portal/audit.py): each record seals its predecessor's hash, so an edit,
    # a deletion or an insertion anywhere but at the end breaks every later link.
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, blank=True)
    # How ``hash`` is computed: 1, canonical JSON in Python (seal()); 2, a body PostgreSQL
    # renders, as holdfast_audit_link() writes them (portal/audit_link.py), also the default
    # of a raw INSERT. Records from before version 2 keep 1.
    version = models.PositiveSmallIntegerField(default=1, db_default=2)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["-at", "-id"], name="audit_at_idx"),
            models.Index(fields=["vault_name", "-at"], name="audit_vault_idx"),
            models.Index(fields=["operation", "-at"], name="audit_operation_idx"),
        ]
        triggers = [
            pgtrigger.Protect(
                name="audit_append_only", operation=pgtrigger.Update | pgtrigger.Delete
            ),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.operation} {self.outcome}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("audit records cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:  # type: ignore[override]
        raise AppendOnlyError("audit records cannot be deleted")


class AuditPending(AuditContent):
    """A gate decision committed but not linked into the chain yet (PostgreSQL only): the
    linker (portal/audit_link.py) moves it into AuditRecord right after the commit. The
    application role may only insert and read these rows, like the log's."""

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name} {self.operation} (pending)"


class ApprovalQuerySet(models.QuerySet["Approval"]):
    """The two questions asked of approvals everywhere, answered as of ``now`` (expiry is
    judged at read time, never left to a sweep)."""

    def pending(self, now: datetime) -> ApprovalQuerySet:
        """Requests still waiting for a decision."""
        return self.filter(status=Approval.Status.PENDING, expires_at__gt=now)

    def active_elevations(self, now: datetime) -> ApprovalQuerySet:
        """Approved elevations on a Resource Guard whose time has not run out."""
        return self.filter(
            kind=Approval.Kind.ELEVATION, status=Approval.Status.APPROVED, active_until__gt=now
        )


class Approval(models.Model):
    """A pending irreversible action or elevation request, decided by a second person."""

    class Kind(models.TextChoices):
        LOCK_IMMUTABILITY = "lock_immutability", "Lock immutability"
        ALWAYS_ON_SOFT_DELETE = "always_on_soft_delete", "Make soft delete always-on"
        ELEVATION = "elevation", "Elevation on a Resource Guard"
        GUARD_WEAKEN = "guard_weaken", "Weaken or delete a Resource Guard"
        USER_ROLE_GRANT = "user_role_grant", "Grant an account power"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"
        CANCELLED = "cancelled", "Cancelled"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approval_requests"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="approval_decisions",
    )
    vault = models.ForeignKey(
        "vaults.Vault", null=True, blank=True, on_delete=models.SET_NULL, related_name="approvals"
    )
    guard = models.ForeignKey(
        "guards.ResourceGuard",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="approvals",
    )
    # The account a ``user_role_grant`` gives power to; ``payload`` holds what it asks for
    # (``role`` and/or ``is_superuser``). Users are never deleted, so PROTECT costs nothing.
    account = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="role_grants",
    )
    justification = models.TextField(blank=True)
    duration_minutes = models.PositiveIntegerField(null=True, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(help_text="A pending request expires at this time.")
    decided_at = models.DateTimeField(null=True, blank=True)
    active_until = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)

    objects = ApprovalQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "expires_at"], name="approval_status_idx"),
            models.Index(fields=["guard", "requested_by", "status"], name="approval_elevation_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    def effective_status(self, now: datetime) -> str:
        """The status as of ``now``: expiry is judged at use time, never left to a sweep."""
        if self.status == self.Status.PENDING and now >= self.expires_at:
            return self.Status.EXPIRED
        if (
            self.status == self.Status.APPROVED
            and self.active_until is not None
            and now >= self.active_until
        ):
            return self.Status.EXPIRED
        return self.status

    @property
    def grant_summary(self) -> str:
        """What a ``user_role_grant`` asks for, in words ("role security_admin, superuser")."""
        parts = []
        if self.payload.get("role"):
            parts.append(f"role {self.payload['role']}")
        if self.payload.get("is_superuser"):
            parts.append("superuser")
        return ", ".join(parts)

    def is_active_elevation(self, now: datetime) -> bool:
        return (
            self.kind == self.Kind.ELEVATION and self.effective_status(now) == self.Status.APPROVED
        )


class Alert(models.Model):
    """A security or job alert (SPEC 3.8); a repeat of an open alert is counted, not duplicated."""

    class Category(models.TextChoices):
        SECURITY = "security", "Security"
        JOB = "job", "Job"

    class Severity(models.TextChoices):
        CRITICAL = "critical", "Critical"
        WARNING = "warning", "Warning"
        INFO = "info", "Information"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    kind = models.CharField(max_length=64)
    category = models.CharField(max_length=10, choices=Category.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    status = models.CharField(max_length=14, choices=Status.choices, default=Status.OPEN)
    vault_name = models.CharField(max_length=50, blank=True)
    target = models.CharField(max_length=255, blank=True)
    message = models.TextField()
    count = models.PositiveIntegerField(default=1)
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_at", "-id"]
        indexes = [
            models.Index(fields=["status", "-last_at"], name="alert_status_idx"),
            models.Index(fields=["kind", "vault_name", "target", "status"], name="alert_key_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} on {self.vault_name or '-'} (x{self.count})"
