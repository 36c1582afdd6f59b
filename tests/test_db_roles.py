"""Least privilege in PostgreSQL (issue 7, item 2): `manage.py db_roles`, and the triggers
attacked from the application role's own connection."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from psycopg import sql

from policies import services as policy_services
from portal import clock
from portal import services as portal_services
from portal.gate import DomainError
from portal.models import AuditRecord
from tests.conftest import make_user
from tests.dbroles import (
    APP_PASSWORD,
    APP_ROLE,
    BAD_ROLE,
    ROOT,
    db_roles,
    django_as,
    execute,
    postgres_only,
    skip_unless_roles_can_be_created,
    tcp_settings,
    trigger_names,
)
from tests.factories import make_vault
from vaults import services as vault_services
from vaults.models import RecoveryPoint, Vault


@pytest.fixture
def locked_world(admin: Any, tmp_path: Path) -> dict[str, Any]:
    """A locked vault with an unexpired vault-tier point, committed: what the triggers guard."""
    vault = make_vault(admin, name="locked-vault", immutability="locked")
    policy = policy_services.policy_create(
        actor=admin, vault=vault, name="daily", daily_days=30, weekly_weeks=12
    )
    source = tmp_path / "src"
    source.mkdir()
    item = vault_services.item_protect(
        actor=admin, vault=vault, name="files", source_path=str(source), policy=policy
    )
    point = vault_services.point_record(item=item, created_at=clock.now())
    assert point.tier != RecoveryPoint.Tier.SNAPSHOT
    return {"vault": vault, "point": point}


# --- attacks from the application role's connection -------------------------------------------

ATTACKS = {
    "alter the audit table": "ALTER TABLE portal_auditrecord ADD COLUMN forged text",
    "alter a vaults table": "ALTER TABLE vaults_recoverypoint ALTER expires_at DROP NOT NULL",
    "disable every trigger": "ALTER TABLE vaults_recoverypoint DISABLE TRIGGER ALL",
    "disable the audit trigger": "ALTER TABLE portal_auditrecord DISABLE TRIGGER USER",
    "drop the lock trigger": "DROP TRIGGER {vault_locked_stays_locked} ON vaults_vault",
    "drop the audit trigger": "DROP TRIGGER {audit_append_only} ON portal_auditrecord",
    "add a trigger": "CREATE TRIGGER forged BEFORE DELETE ON portal_auditrecord "
    "FOR EACH ROW EXECUTE FUNCTION {audit_append_only}()",
    "replace a trigger function": "CREATE OR REPLACE FUNCTION {point_immutable_delete}() "
    "RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$",
    "drop the ignore function": "DROP FUNCTION _pgtrigger_should_ignore(name) CASCADE",
    "truncate the audit table": "TRUNCATE portal_auditrecord",
    "truncate recovery points": "TRUNCATE vaults_recoverypoint CASCADE",
    "update an audit record": "UPDATE portal_auditrecord SET reason = 'forged'",
    "delete audit records": "DELETE FROM portal_auditrecord",
    "forge an applied migration": "INSERT INTO django_migrations (app, name, applied) "
    "VALUES ('vaults', '9999_forged', now())",
    "switch triggers off for the session": "SET session_replication_role = replica",
    "create a table": "CREATE TABLE public.forged (id int)",
    "shadow a table with a temporary one": "CREATE TEMP TABLE vaults_vault "
    "(id bigint, immutability text)",
    "create a schema": "CREATE SCHEMA forged",
    "drop a table": "DROP TABLE vaults_recoverypoint CASCADE",
    "drop the audit table": "DROP TABLE portal_auditrecord",
}


@postgres_only
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_app_role_is_refused(as_app: psycopg.Connection, attack: str) -> None:
    statement = ATTACKS[attack].format(**trigger_names())
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_app.execute(statement)


@postgres_only
def test_app_role_cannot_switch_the_triggers_off_with_pgtrigger_ignore(
    locked_world: dict[str, Any], as_app: psycopg.Connection
) -> None:
    # django-pgtrigger skips triggers named in this setting, which any session may set.
    as_app.execute(
        "SELECT set_config('pgtrigger.ignore', %s, false)",
        ["{" + ",".join(trigger_names().values()) + "}"],
    )
    vault, point = locked_world["vault"], locked_world["point"]
    with pytest.raises(psycopg.errors.RaiseException, match="vaults_vault"):
        as_app.execute(
            "UPDATE vaults_vault SET immutability = 'disabled' WHERE id = %s", [vault.pk]
        )
    with pytest.raises(psycopg.errors.RaiseException, match="immutable_vault"):
        as_app.execute("DELETE FROM vaults_recoverypoint WHERE id = %s", [point.pk])
    with pytest.raises(psycopg.errors.RaiseException, match="immutable_vault"):
        as_app.execute(
            "UPDATE vaults_recoverypoint SET expires_at = now() WHERE id = %s", [point.pk]
        )
    assert Vault.objects.get(pk=vault.pk).is_locked
    assert RecoveryPoint.objects.filter(pk=point.pk).exists()


@postgres_only
def test_a_migration_that_reinstalls_the_triggers_needs_db_roles_again(
    locked_world: dict[str, Any], app_role: str
) -> None:
    # A migration that installs a trigger brings back pgtrigger's own ignore function ...
    call_command("pgtrigger", "install", stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError):
        db_roles("--check", app_role=app_role)
    vault = locked_world["vault"]
    with psycopg.connect(**tcp_settings(), user=app_role, password=APP_PASSWORD) as attacker:
        attacker.execute(
            "SELECT set_config('pgtrigger.ignore', %s, true)",
            ["{" + trigger_names()["vault_locked_stays_locked"] + "}"],
        )
        attacker.execute("UPDATE vaults_vault SET region = 'moved' WHERE id = %s", [vault.pk])
        # ... under which the application could unlock a vault: rolled back here.
        attacker.execute(
            "UPDATE vaults_vault SET immutability = 'disabled' WHERE id = %s", [vault.pk]
        )
        attacker.rollback()
    # ... so `db_roles` runs after every migrate, and closes it again.
    db_roles(app_role=app_role)
    assert "is least-privilege" in db_roles("--check", app_role=app_role)


@postgres_only
def test_app_role_cannot_demote_a_protected_point_to_a_snapshot(
    locked_world: dict[str, Any], as_app: psycopg.Connection
) -> None:
    with pytest.raises(psycopg.errors.RaiseException):
        as_app.execute(
            "UPDATE vaults_recoverypoint SET tier = 'snapshot' WHERE id = %s",
            [locked_world["point"].pk],
        )


# --- what the application role may do ---------------------------------------------------------


@postgres_only
def test_app_role_reads_and_writes_ordinary_tables_and_reads_the_audit_log(
    locked_world: dict[str, Any], as_app: psycopg.Connection
) -> None:
    vault = locked_world["vault"]
    assert as_app.execute("SELECT count(*) FROM portal_auditrecord").fetchone()[0] > 0
    as_app.execute("UPDATE vaults_vault SET region = 'moved' WHERE id = %s", [vault.pk])
    as_app.execute("INSERT INTO django_session VALUES ('db-roles-test', 'x', now())")
    as_app.execute("DELETE FROM django_session WHERE session_key = 'db-roles-test'")
    assert Vault.objects.get(pk=vault.pk).region == "moved"


@postgres_only
def test_the_application_runs_as_the_app_role_and_the_gate_audits(app_role: str) -> None:
    with django_as(app_role, APP_PASSWORD):
        assert execute("SELECT current_user") == [(app_role,)]
        admin = make_user("alice", "backup_admin")
        approver = make_user("sam", "security_admin")
        vault = make_vault(admin, name="app-role-vault", immutability="enabled")
        approval = vault_services.immutability_lock_request(
            actor=admin, vault=vault, confirmation=vault.name
        )
        portal_services.approval_approve(actor=approver, approval=approval)
        vault.refresh_from_db()
        assert vault.is_locked
        with pytest.raises(DomainError):
            vault_services.immutability_set(actor=admin, vault=vault, state="disabled")
        last = AuditRecord.objects.order_by("-id").first()
        assert (last.operation, last.outcome, last.vault_name) == (
            "immutability_disable",
            "refused",
            "app-role-vault",
        )
        out = StringIO()
        call_command("audit_verify", stdout=out)
        assert "Audit chain intact" in out.getvalue()
        # --check from the application's own connection checks the connected role.
        assert f"Role {app_role} is least-privilege" in db_roles("--check")


# --- the command: idempotence, refusals, --check -----------------------------------------------


@postgres_only
@pytest.mark.django_db
def test_db_roles_is_idempotent_and_grants_append_only_on_the_audit_table() -> None:
    skip_unless_roles_can_be_created()
    assert "Created" in db_roles(app_role=APP_ROLE, app_password=APP_PASSWORD)
    assert "Updated" in db_roles(app_role=APP_ROLE)
    granted = execute(
        "SELECT privilege_type FROM information_schema.role_table_grants "
        "WHERE grantee = %s AND table_name = 'portal_auditrecord' ORDER BY 1",
        [APP_ROLE],
    )
    assert [row[0] for row in granted] == ["INSERT", "SELECT"]
    assert "is least-privilege" in db_roles("--check", app_role=APP_ROLE)


@postgres_only
@pytest.mark.django_db
def test_tables_created_later_get_the_ordinary_grants() -> None:
    skip_unless_roles_can_be_created()
    db_roles(app_role=APP_ROLE)
    execute("CREATE TABLE public.later_migration (id int)")
    rows = execute(
        "SELECT has_table_privilege(%s, 'later_migration', 'UPDATE'), "
        "has_table_privilege(%s, 'later_migration', 'TRUNCATE')",
        [APP_ROLE, APP_ROLE],
    )
    assert rows == [(True, False)]


BAD_ROLES = {
    "a superuser": ("CREATE ROLE {role} SUPERUSER", "is a superuser"),
    "may create databases": ("CREATE ROLE {role} CREATEDB", "has CREATEDB"),
    "may create roles": ("CREATE ROLE {role} CREATEROLE", "has CREATEROLE"),
    "bypasses row security": ("CREATE ROLE {role} BYPASSRLS", "has BYPASSRLS"),
    "owns a table": (
        "CREATE ROLE {role}; CREATE TABLE public.owned (id int); ALTER TABLE owned OWNER TO {role}",
        "owns table owned",
    ),
    "belongs to the owner": ("CREATE ROLE {role} IN ROLE CURRENT_USER", "belongs to"),
}


@postgres_only
@pytest.mark.django_db
@pytest.mark.parametrize("case", list(BAD_ROLES))
def test_db_roles_refuses_a_role_that(case: str) -> None:
    skip_unless_roles_can_be_created()
    setup, sentence = BAD_ROLES[case]
    for statement in setup.split("; "):
        execute(sql.SQL(statement).format(role=sql.Identifier(BAD_ROLE)))
    with pytest.raises(CommandError, match=f"Refusing to set up {BAD_ROLE}: .*{sentence}"):
        db_roles(app_role=BAD_ROLE)
    with pytest.raises(CommandError, match="not least-privilege"):
        db_roles("--check", app_role=BAD_ROLE)
    # Nothing was granted: the refusal rolled the whole set-up back (a superuser, or a member
    # of the owner, holds the privilege anyway).
    held = execute("SELECT has_table_privilege(%s, 'vaults_vault', 'DELETE')", [BAD_ROLE])
    assert held == [(case in {"a superuser", "belongs to the owner"},)]


@postgres_only
@pytest.mark.django_db
def test_db_roles_refuses_the_owner_itself_and_a_missing_name(settings: Any) -> None:
    owner = execute("SELECT current_user")[0][0]
    with pytest.raises(CommandError, match="it is the role this command is connected as"):
        db_roles(app_role=owner)
    settings.HOLDFAST_DB_APP_ROLE = ""
    with pytest.raises(CommandError, match="Name the application role"):
        db_roles()


# Each case is undone with the test's transaction.
CHECK_BREAKS = {
    "audit rows may be updated": (
        "GRANT UPDATE ON portal_auditrecord TO {role}",
        "can UPDATE portal_auditrecord",
    ),
    "a table may be truncated": (
        "GRANT TRUNCATE ON vaults_vault TO {role}",
        "can TRUNCATE vaults_vault",
    ),
    "temporary tables are allowed": (
        "GRANT TEMPORARY ON DATABASE {database} TO {role}",
        "can create temporary tables",
    ),
    "a grant is missing": (
        "REVOKE INSERT ON vaults_job FROM {role}",
        "cannot INSERT vaults_job, which the application needs",
    ),
    "a trigger is disabled": (
        "ALTER TABLE vaults_vault DISABLE TRIGGER ALL",
        "trigger vault_locked_stays_locked on vaults_vault is disabled",
    ),
}


@postgres_only
@pytest.mark.django_db
@pytest.mark.parametrize("case", list(CHECK_BREAKS))
def test_check_names_what_is_wrong(case: str) -> None:
    skip_unless_roles_can_be_created()
    db_roles(app_role=APP_ROLE)
    assert "is least-privilege" in db_roles("--check", app_role=APP_ROLE)
    breaks, sentence = CHECK_BREAKS[case]
    database = sql.Identifier(connection.settings_dict["NAME"])
    execute(sql.SQL(breaks).format(role=sql.Identifier(APP_ROLE), database=database))
    out = StringIO()
    with pytest.raises(CommandError, match=f"Role {APP_ROLE} is not least-privilege"):
        call_command("db_roles", "--check", app_role=APP_ROLE, stdout=out)
    assert f"- {sentence}" in out.getvalue()


@postgres_only
@pytest.mark.django_db
def test_check_refuses_the_owner_as_the_application_role() -> None:
    owner = execute("SELECT current_user")[0][0]
    with pytest.raises(CommandError, match="not least-privilege"):
        db_roles("--check", app_role=owner)


# --- settings, URLs and SQLite ----------------------------------------------------------------


def test_print_app_url_swaps_in_the_app_role(settings: Any) -> None:
    settings.DATABASE_OWNER_URL = "postgres://owner:secret@db.example:5433/holdfast?sslmode=require"
    out = db_roles("--print-app-url", app_role="holdfast_app", app_password="p@ss/word")
    assert out.strip() == (
        "postgres://holdfast_app:p%40ss%2Fword@db.example:5433/holdfast?sslmode=require"
    )


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "HOLDFAST_DB_"))
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**environment, "DJANGO_SETTINGS_MODULE": "portal.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("command", "connects_as", "app_role"),
    [("migrate", "owner", "app"), ("db_roles", "owner", "app"), ("runserver", "app", "")],
)
def test_only_migrate_and_db_roles_connect_as_the_owner(
    command: str, connects_as: str, app_role: str
) -> None:
    code = (
        f"import sys; sys.argv = ['manage.py', {command!r}]; from portal import settings as s; "
        "print(s.DATABASES['default']['USER'], s.HOLDFAST_DB_APP_ROLE or '-')"
    )
    result = run_python(
        code,
        DATABASE_URL="postgres://app:app-password@db.example:5432/holdfast",
        DATABASE_OWNER_URL="postgres://owner:owner-password@db.example:5432/holdfast",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [connects_as, app_role or "-"]


def test_db_roles_on_sqlite_says_roles_do_not_apply(tmp_path: Path) -> None:
    code = "import django; django.setup(); from django.core.management import call_command; "
    code += "call_command('db_roles')"
    result = run_python(
        code, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", HOLDFAST_VAR_DIR=str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert "Database roles do not apply to SQLite" in result.stdout
