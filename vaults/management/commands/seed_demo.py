"""``manage.py seed_demo``: a user per role, a dozen vaults and a living system, for the
embedded quick start (``make run``) and a first sign-in that finds something on every page.

A vaults command (it creates vaults through the vaults' services); the kernel's commands
(``adduser``, ``db_roles``, the audit anchors) import no app.

Beyond users and vaults (``vaults/demo.py`` has the rest): a few small directories under
``var/demo/``, items protecting them, real backups run in this process through the jobs'
own runner (so real recovery points in the vault's store, one moved to the archive tier), a
backup that fails with its alert, a vault locked by an approved request, a vault guarded by a
Resource Guard, and a pending lock request and elevation request for the approvers.

Idempotent: what already exists is left alone (a pending request that expired is asked for
again). Every write goes through the services (and so the gate), as the demo users
themselves, or through the job runner, as a worker would.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from portal import services
from portal.gate import DomainError, entry_point
from vaults import services as vault_services
from vaults.demo import seed_living_demo
from vaults.models import Vault

DEMO_USERS = [
    ("admin", "backup_admin", "holdfast-admin", True),
    ("alice", "backup_admin", "holdfast-alice", False),
    ("sam", "security_admin", "holdfast-sam", False),
    ("sofia", "security_admin", "holdfast-sofia", False),
    ("oscar", "operator", "holdfast-oscar", False),
    ("rita", "reader", "holdfast-rita", False),
]

# name, kind, region, immutability, tags
DEMO_VAULTS = [
    ("prod-sql-weu", "recovery_services", "westeurope", "locked", {"env": "prod"}),
    ("prod-files-weu", "recovery_services", "westeurope", "enabled", {"env": "prod"}),
    ("prod-vm-neu", "recovery_services", "northeurope", "enabled", {"env": "prod"}),
    ("prod-blobs-eus", "backup", "eastus", "locked", {"env": "prod"}),
    ("prod-disks-eus", "backup", "eastus", "disabled", {"env": "prod"}),
    ("stage-vm-weu", "recovery_services", "westeurope", "disabled", {"env": "stage"}),
    ("stage-pg-neu", "backup", "northeurope", "enabled", {"env": "stage"}),
    ("dev-vm-eus", "recovery_services", "eastus", "disabled", {"env": "dev"}),
    ("dev-blobs-sea", "backup", "southeastasia", "disabled", {"env": "dev"}),
    ("finance-archive", "archive", "westeurope", "locked", {"team": "finance"}),
    ("legal-archive", "archive", "northeurope", "enabled", {"team": "legal"}),
    ("hr-files-sea", "recovery_services", "southeastasia", "enabled", {"team": "hr"}),
]


class Command(BaseCommand):
    help = "Load demo users (one per role) and a dozen vaults."

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        with entry_point("command"):
            for username, role, password, superuser in DEMO_USERS:
                if not user_model.objects.filter(username=username).exists():
                    services.user_create(
                        actor=None,
                        username=username,
                        role=role,
                        password=password,
                        is_superuser=superuser,
                    )
            admin = user_model.objects.get(username="alice")
            approver = user_model.objects.get(username="sam")
            for name, kind, region, state, tags in DEMO_VAULTS:
                if Vault.objects.filter(name=name).exists():
                    continue
                vault = vault_services.vault_create(
                    actor=admin, name=name, kind=kind, region=region, tags=tags
                )
                if state in {"enabled", "locked"}:
                    vault_services.immutability_set(actor=admin, vault=vault, state="enabled")
                if state == "locked":
                    approval = vault_services.immutability_lock_request(
                        actor=admin, vault=vault, confirmation=name
                    )
                    services.approval_approve(actor=approver, approval=approval)
            try:
                for line in seed_living_demo():
                    self.stdout.write(line)
            except DomainError as error:  # e.g. HOLDFAST_SOURCE_ROOTS leaves var/demo/ out
                self.stderr.write(f"The demo's items and backups were not all made: {error}")
        self.stdout.write("Demo data ready. Sign in at http://127.0.0.1:8000/ (or your PORT) as:")
        for username, role, password, superuser in DEMO_USERS:
            extra = " (superuser)" if superuser else ""
            self.stdout.write(f"  {username:<7} {role:<15} password: {password}{extra}")
