"""The gate is the only write path: reached from the page, API, admin, shell and commands."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.test import Client

from portal.gate import OPERATIONS, DomainError
from portal.models import AppendOnlyError, AuditRecord
from tests.factories import make_vault
from vaults import services
from vaults.models import Vault

ROOT = Path(__file__).resolve().parent.parent
APP_PACKAGES = ["portal", "vaults", "policies", "guards"]
WRITE_METHODS = {
    "save",
    "delete",
    "create",
    "update",
    "bulk_create",
    "bulk_update",
    "get_or_create",
    "update_or_create",
    "set",
    "add",
    "remove",
    "clear",
}
# Modules allowed to write model rows: the services (``services.py``, or the modules of a
# ``services/`` package) through the gate, the gate itself and
# the alerts it raises, the job runner's bookkeeping (progress, claims; its domain changes go
# through the services), and role bootstrap (groups and permissions, not domain state).
WRITERS = {"services.py", "gate.py", "roles.py", "alerts.py"}
# The jobs package (vaults/jobs/) but for its pages, API, forms, filters and URLs.
JOB_BOOKKEEPING = {"state.py", "requests.py", "runner.py", "schedules.py", "sweeps.py"}
# Pure modules with no ORM access (their .add()/.update() are on sets and dicts).
PURE = {"settings.py", "rules.py"}


QUERYSET_HINTS = ("objects", "filter(", "exclude(", ".all(", "select_for_update", "_set", "groups")


def _write_calls(path: Path) -> list[str]:
    """Calls that write rows: ``.save()``/``.delete()`` on anything but ``super()``, and the
    queryset or related-manager writes (``objects...update()``, ``x.groups.set()``, ...);
    dict and set methods of the same names are not writes."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name, receiver = node.func.attr, node.func.value
        if isinstance(receiver, ast.Call) and getattr(receiver.func, "id", "") == "super":
            continue
        source = ast.unparse(receiver)
        row_write = name in {"save", "delete"}
        queryset_write = name in WRITE_METHODS and any(h in source for h in QUERYSET_HINTS)
        if row_write or queryset_write:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {source}.{name}()")
    return found


def test_no_module_but_the_services_writes_model_rows() -> None:
    offenders = []
    for package in APP_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).parts
            if "migrations" in parts or "storage" in parts or path.name in WRITERS | PURE:
                continue
            if "services" in parts:  # a services package: one module per blade or concern
                continue
            if parts[:2] == ("vaults", "jobs") and (
                path.name in JOB_BOOKKEEPING or "kinds" in parts
            ):
                continue
            offenders += _write_calls(path)
    # Messages and sets of form data are not model writes; nothing else may appear.
    assert offenders == [], "write calls outside services: " + ", ".join(offenders)


def test_every_operation_in_the_table_names_a_capability() -> None:
    capabilities = {
        "view",
        "operate",
        "manage",
        "approve",
        "manage_guards",
        "superuser",
        "installation",
        "account",
        "system",
        "respond",
    }
    assert {op.capability for op in OPERATIONS.values()} <= capabilities


@pytest.mark.django_db
def test_gate_from_the_shell_is_audited_as_shell(admin: Any) -> None:
    vault = make_vault(admin, name="shell-vault")
    services.immutability_set(actor=admin, vault=vault, state="enabled")
    assert AuditRecord.objects.first().source == "shell"


@pytest.mark.django_db
def test_gate_from_the_api_and_page_is_audited_with_its_source(admin: Any, api: Any) -> None:
    make_vault(admin, name="via-api")
    make_vault(admin, name="via-web")
    api(admin).post("/api/v1/vaults/via-api/immutability/", {"state": "enabled"}, format="json")
    web = Client()
    web.force_login(admin)
    web.post("/vaults/via-web/immutability/change/", {"state": "enabled"})
    sources = dict(
        AuditRecord.objects.filter(operation__startswith="immutability_")
        .values_list("vault_name", "source")
        .order_by("at", "id")
    )
    assert sources["via-api"] == "api"
    assert sources["via-web"] == "web"


@pytest.mark.django_db
def test_admin_has_no_actions_and_changes_nothing(admin: Any, superuser: Any) -> None:
    # The admin is read-only (SPEC 8): what it used to offer as actions is simply not there.
    vault = make_vault(admin, name="via-admin", immutability="enabled")
    site = Client()
    site.force_login(superuser)
    listing = site.get("/admin/vaults/vault/")
    assert listing.status_code == 200
    assert "disable_immutability" not in listing.content.decode()
    before = AuditRecord.objects.count()
    site.post(
        "/admin/vaults/vault/", {"action": "disable_immutability", "_selected_action": [vault.pk]}
    )
    vault.refresh_from_db()
    assert vault.immutability == "enabled"
    assert AuditRecord.objects.count() == before


@pytest.mark.django_db
def test_admin_cannot_edit_a_vault_or_the_audit_log(admin: Any, superuser: Any) -> None:
    vault = make_vault(admin, name="admin-edit", immutability="locked")
    site = Client()
    site.force_login(superuser)
    page = site.get(f"/admin/vaults/vault/{vault.pk}/change/")
    assert page.status_code == 200
    assert 'name="immutability"' not in page.content.decode()
    record = AuditRecord.objects.first()
    assert site.get(f"/admin/portal/auditrecord/{record.pk}/delete/").status_code == 403
    assert (
        site.post(f"/admin/portal/auditrecord/{record.pk}/change/", {"operation": "x"}).status_code
        == 403
    )


@pytest.mark.django_db
def test_admin_cannot_delete_a_vault(admin: Any, superuser: Any) -> None:
    vault = make_vault(admin, name="admin-del")
    site = Client()
    site.force_login(superuser)
    assert site.post(f"/admin/vaults/vault/{vault.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Vault.objects.filter(name="admin-del").exists()


@pytest.mark.django_db
def test_refusal_changes_nothing_but_the_audit_log(admin: Any, reader: Any) -> None:
    vault = make_vault(admin)
    before = (Vault.objects.values().get(pk=vault.pk), AuditRecord.objects.count())
    with pytest.raises(DomainError):
        services.immutability_set(actor=reader, vault=vault, state="enabled")
    assert Vault.objects.values().get(pk=vault.pk) == before[0]
    assert AuditRecord.objects.count() == before[1] + 1


@pytest.mark.django_db
def test_audit_records_are_append_only_in_code(admin: Any) -> None:
    make_vault(admin)
    record = AuditRecord.objects.first()
    record.reason = "rewritten"
    with pytest.raises(AppendOnlyError):
        record.save()
    with pytest.raises(AppendOnlyError):
        record.delete()
    with pytest.raises(AppendOnlyError):
        AuditRecord.objects.all().delete()
    with pytest.raises(AppendOnlyError):
        AuditRecord.objects.update(reason="x")


@pytest.mark.django_db
def test_postgresql_refuses_update_and_delete_of_audit_rows(admin: Any) -> None:
    assert connection.vendor == "postgresql"
    make_vault(admin)
    count = AuditRecord.objects.count()
    table = AuditRecord._meta.db_table
    for statement in (f"UPDATE {table} SET reason = 'x'", f"DELETE FROM {table}"):
        refused = pytest.raises(DatabaseError, match="Cannot update or delete")
        with refused, transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    assert AuditRecord.objects.count() == count


@pytest.mark.django_db
def test_adduser_command(db: None) -> None:
    out = StringIO()
    call_command(
        "adduser",
        "carol",
        "--role",
        "operator",
        "--password",
        "another-long-passphrase",
        stdout=out,
    )
    assert "Created carol with role operator" in out.getvalue()
    record = AuditRecord.objects.first()
    assert (record.operation, record.source, record.actor_name) == (
        "user_create",
        "command",
        "holdfast",
    )
    with pytest.raises(CommandError, match="already exists"):
        call_command(
            "adduser", "carol", "--role", "operator", "--password", "another-long-passphrase"
        )
    with pytest.raises(CommandError, match="password"):
        call_command("adduser", "dave", "--role", "operator", "--password", "123")


@pytest.mark.django_db
def test_adduser_reads_the_password_from_stdin(monkeypatch: Any) -> None:
    monkeypatch.setattr(sys, "stdin", StringIO("stdin-long-passphrase\n"))
    call_command("adduser", "erin", "--role", "reader", "--password-stdin", stdout=StringIO())
    from django.contrib.auth import authenticate

    assert authenticate(username="erin", password="stdin-long-passphrase") is not None


@pytest.mark.django_db
def test_seed_demo_is_idempotent() -> None:
    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())
    assert Vault.objects.count() == 12
    states = set(Vault.objects.values_list("immutability", flat=True))
    kinds = set(Vault.objects.values_list("kind", flat=True))
    assert states == {"disabled", "enabled", "locked"}
    assert {"recovery_services", "backup"} <= kinds
    assert len(set(Vault.objects.values_list("region", flat=True))) >= 3


def test_production_settings_pass_check_deploy(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "SECRET_KEY": "x" * 64 + "-prod-key-0123456789",
        "ALLOWED_HOSTS": "holdfast.example.com",
        "HOLDFAST_VAR_DIR": str(tmp_path),
    }
    env.pop("DATABASE_URL", None)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
