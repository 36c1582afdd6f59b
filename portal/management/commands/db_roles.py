"""``manage.py db_roles [--app-role NAME] [--app-password PW] [--check | --print-app-url]``.

Least privilege inside PostgreSQL (docs/security.md, "Database roles"). Run as the role that owns
the tables, the one `migrate` runs as (DATABASE_OWNER_URL), after every `migrate`: it creates
the application's LOGIN role if it is missing and grants it ordinary reads and writes, but only
SELECT and INSERT on the audit log and SELECT on django_migrations; it can never alter, truncate
or disable triggers on a table, create tables, or switch the pgtrigger triggers off with the
``pgtrigger.ignore`` setting. Idempotent and cheap. ``--check`` reports whether a role is set
up so and exits non-zero otherwise; it needs only read access to the catalogs.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pgtrigger
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection, transaction
from django.db.migrations.recorder import MigrationRecorder
from psycopg import sql

from portal.models import AuditPending, AuditRecord

SCHEMA = "public"
DML = ("SELECT", "INSERT", "UPDATE", "DELETE")
NEVER = ("TRUNCATE", "REFERENCES", "TRIGGER")
IGNORE_FUNCTION = "_pgtrigger_should_ignore"
IGNORE_MARKER = "holdfast db_roles: pgtrigger.ignore for the owner only"

# pgtrigger skips a trigger named in the session setting pgtrigger.ignore, which any role may
# set. This replacement honours it only for members of the function's owner (the migrations
# role; superusers are members of every role), never for the application. A migration that
# installs a trigger puts pgtrigger's own version back: hence "after every migrate".
_HARDENED_IGNORE = """
CREATE OR REPLACE FUNCTION {function}(trigger_name NAME)
RETURNS BOOLEAN AS $$
    -- {marker}
    DECLARE
        _pgtrigger_ignore TEXT[];
    BEGIN
        BEGIN
            SELECT INTO _pgtrigger_ignore CURRENT_SETTING('pgtrigger.ignore');
            EXCEPTION WHEN OTHERS THEN
        END;
        IF _pgtrigger_ignore IS NULL OR (trigger_name = ANY(_pgtrigger_ignore)) IS NOT TRUE THEN
            RETURN FALSE;
        END IF;
        RETURN pg_catalog.pg_has_role(current_user, (
            SELECT p.proowner FROM pg_catalog.pg_proc p
            JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = {schema} AND p.proname = {name}
        ), 'MEMBER');
    END;
$$ LANGUAGE plpgsql
"""


def restricted_tables() -> dict[str, tuple[str, ...]]:
    """Tables whose rows the application may not change. The audit log is append-only; a
    forged row in django_migrations would make a later `migrate` skip a migration (say, one
    that installs a trigger), and only `migrate`, as the owner, writes there."""
    return {
        AuditRecord._meta.db_table: ("SELECT", "INSERT"),
        # Decisions waiting to be linked into the chain: only the linker (as owner) moves them.
        AuditPending._meta.db_table: ("SELECT", "INSERT"),
        MigrationRecorder.Migration._meta.db_table: ("SELECT",),
    }


class Command(BaseCommand):
    help = "Set up (or --check) the application's least-privilege PostgreSQL role."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--app-role",
            default="",
            help="The application's role (default: HOLDFAST_DB_APP_ROLE, else DATABASE_URL's "
            "user when DATABASE_OWNER_URL is set; with --check, the connected role).",
        )
        parser.add_argument(
            "--app-password",
            default="",
            help="Its password, set on every run (default: HOLDFAST_DB_APP_PASSWORD, else "
            "DATABASE_URL's). Without one, an existing role keeps its password.",
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--check",
            action="store_true",
            help="Change nothing; exit non-zero unless the role is least-privilege.",
        )
        mode.add_argument(
            "--print-app-url",
            action="store_true",
            help="Print DATABASE_OWNER_URL with the application role's name and password.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        role = options["app_role"] or settings.HOLDFAST_DB_APP_ROLE
        password = options["app_password"] or settings.HOLDFAST_DB_APP_PASSWORD
        if options["print_app_url"]:
            self.stdout.write(app_url(settings.DATABASE_OWNER_URL, role, password))
            return
        if connection.vendor != "postgresql":
            self.stdout.write(
                f"Database roles do not apply to {connection.display_name}: there is one "
                "file and no role to restrict. Use PostgreSQL in production."
            )
            return
        if options["check"]:
            self.check_role(role)
            return
        if not role:
            raise CommandError(
                "Name the application role: --app-role, HOLDFAST_DB_APP_ROLE, or "
                "DATABASE_URL with DATABASE_OWNER_URL set."
            )
        self.set_up(role, password)

    def set_up(self, role: str, password: str) -> None:
        hashed = ""
        if password:
            # Hashed here, so the clear password never reaches the server or its logs.
            connection.ensure_connection()
            pgconn = connection.connection.pgconn
            hashed = pgconn.encrypt_password(password.encode(), role.encode()).decode()
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                if role == current_user(cursor):
                    raise CommandError(
                        f"Refusing to set up {role}: it is the role this command is connected "
                        "as. The application needs a role of its own; run db_roles as the owner."
                    )
                created = ensure_role(cursor, role, hashed)
                refusals = role_refusals(cursor, role)
                if refusals:
                    raise CommandError(
                        f"Refusing to set up {role}: it {'; it '.join(refusals)}. The "
                        "application role must be a plain LOGIN role that owns nothing and "
                        "belongs to no other role."
                    )
                for statement in grant_statements(role, current_database(cursor)):
                    run(cursor, statement)
                harden_pgtrigger_ignore(cursor)
        except DatabaseError as error:
            raise CommandError(
                f"Could not set up {role}: {str(error).strip()}. Run db_roles as the role that "
                "owns the tables (DATABASE_OWNER_URL), one allowed to create roles."
            ) from error
        if created and not password:
            self.stderr.write(
                f"{role} has no password: it can sign in only where pg_hba.conf trusts it."
            )
        self.stdout.write(
            f"{'Created' if created else 'Updated'} {role}: it reads and writes the "
            f"application's tables, only appends to {AuditRecord._meta.db_table}, and cannot "
            "alter, truncate or disable triggers. Run db_roles again after every migrate."
        )

    def check_role(self, role: str) -> None:
        with connection.cursor() as cursor:
            role = role or current_user(cursor)
            if not role_exists(cursor, role):
                raise CommandError(f"Role {role} does not exist: run db_roles as the owner.")
            problems = [f"it {refusal}" for refusal in role_refusals(cursor, role)]
            problems += privilege_problems(cursor, role)
            problems += trigger_problems(cursor)
        if problems:
            for problem in problems:
                self.stdout.write(f"- {problem}")
            raise CommandError(
                f"Role {role} is not least-privilege ({len(problems)} problem(s) above): run "
                "`manage.py db_roles` as the owner after migrate."
            )
        self.stdout.write(
            f"Role {role} is least-privilege: no ownership, no role attributes, no TRUNCATE, "
            f"REFERENCES or TRIGGER, append-only on {AuditRecord._meta.db_table}, no CREATE or "
            "TEMPORARY; the triggers are installed, enabled and cannot be ignored by it."
        )


def app_url(owner_url: str, role: str, password: str) -> str:
    """The owner's URL with the application role's credentials: same server, same database."""
    if not owner_url or not role:
        raise CommandError("--print-app-url needs DATABASE_OWNER_URL and the application role.")
    parts = urlsplit(owner_url)
    credentials = quote(role, safe="") + (f":{quote(password, safe='')}" if password else "")
    return urlunsplit(parts._replace(netloc=f"{credentials}@{parts.netloc.rpartition('@')[2]}"))


def run(cursor: Any, statement: sql.Composable) -> None:
    cursor.execute(statement.as_string(cursor.connection))


def current_user(cursor: Any) -> str:
    cursor.execute("SELECT current_user")
    return str(cursor.fetchone()[0])


def current_database(cursor: Any) -> str:
    cursor.execute("SELECT current_database()")
    return str(cursor.fetchone()[0])


def role_exists(cursor: Any, role: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", [role])
    return cursor.fetchone() is not None


def ensure_role(cursor: Any, role: str, hashed_password: str) -> bool:
    """Create the role if it is missing (True if it was); set its password when one is given.
    An existing role's attributes are left alone: role_refusals judges them."""
    password = sql.SQL(" PASSWORD {}").format(sql.Literal(hashed_password))
    if role_exists(cursor, role):
        if hashed_password:
            run(cursor, sql.SQL("ALTER ROLE {}").format(sql.Identifier(role)) + password)
        return False
    statement = sql.SQL(
        "CREATE ROLE {} WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE "
        "NOREPLICATION NOBYPASSRLS"
    ).format(sql.Identifier(role))
    run(cursor, statement + password if hashed_password else statement)
    return True


def role_refusals(cursor: Any, role: str) -> list[str]:
    """Why ``role`` cannot be the application's role, as sentence endings ("is a superuser")."""
    refusals = []
    cursor.execute(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication "
        "FROM pg_catalog.pg_roles WHERE rolname = %s",
        [role],
    )
    flags = cursor.fetchone()
    names = ("a superuser", "CREATEROLE", "CREATEDB", "BYPASSRLS", "REPLICATION")
    for name, flag in zip(names, flags, strict=True):
        if flag:
            refusals.append(f"is {name}" if name == "a superuser" else f"has {name}")
    cursor.execute(
        "SELECT r.rolname FROM pg_catalog.pg_roles r "
        "WHERE r.rolname <> %s AND pg_catalog.pg_has_role(%s, r.oid, 'MEMBER') ORDER BY 1",
        [role, role],
    )
    member_of = [row[0] for row in cursor.fetchall()]
    if member_of:
        refusals.append(f"belongs to {_names(member_of)}")
    cursor.execute(
        """
        WITH me AS (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s)
        SELECT 'database ' || datname FROM pg_catalog.pg_database, me
            WHERE datname = current_database() AND datdba = me.oid
        UNION ALL SELECT 'schema ' || nspname FROM pg_catalog.pg_namespace, me
            WHERE nspowner = me.oid
        UNION ALL SELECT 'table ' || relname FROM pg_catalog.pg_class, me
            WHERE relowner = me.oid
        UNION ALL SELECT 'function ' || proname FROM pg_catalog.pg_proc, me
            WHERE proowner = me.oid
        ORDER BY 1
        """,
        [role],
    )
    owned = [row[0] for row in cursor.fetchall()]
    if owned:
        refusals.append(f"owns {_names(owned)}")
    return refusals


def _names(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def grant_statements(role: str, database: str) -> list[sql.Composable]:
    app, schema, db = sql.Identifier(role), sql.Identifier(SCHEMA), sql.Identifier(database)
    statements: list[sql.Composable] = [
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, app),
        # TEMPORARY too: a temporary table named like one of ours would shadow it inside the
        # trigger functions, which name tables without their schema.
        sql.SQL("REVOKE CREATE, TEMPORARY ON DATABASE {} FROM PUBLIC, {}").format(db, app),
        sql.SQL("REVOKE CREATE ON SCHEMA {} FROM PUBLIC, {}").format(schema, app),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, app),
        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM PUBLIC").format(schema),
        sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA {} TO {}").format(_privileges(DML), schema, app),
        sql.SQL("REVOKE {} ON ALL TABLES IN SCHEMA {} FROM {}").format(
            _privileges(NEVER), schema, app
        ),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(schema, app),
        # Tables created by later migrations get the ordinary grants at once; the restricted
        # ones below need this command again.
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT {} ON TABLES TO {}").format(
            schema, _privileges(DML), app
        ),
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT USAGE, SELECT ON SEQUENCES TO {}"
        ).format(schema, app),
    ]
    for table, allowed in restricted_tables().items():
        denied = [privilege for privilege in DML if privilege not in allowed]
        statements.append(
            sql.SQL("REVOKE {} ON {} FROM {}").format(
                _privileges(denied), sql.Identifier(SCHEMA, table), app
            )
        )
    return statements


def _privileges(names: tuple[str, ...] | list[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL(name) for name in names)


def harden_pgtrigger_ignore(cursor: Any) -> None:
    schema = pgtrigger.features.schema()
    cursor.execute(
        "SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n "
        "ON n.oid = p.pronamespace WHERE n.nspname = %s AND p.proname = %s",
        [schema, IGNORE_FUNCTION],
    )
    if cursor.fetchone() is None:
        return  # no trigger installed yet, nothing to ignore
    run(
        cursor,
        sql.SQL(_HARDENED_IGNORE).format(
            function=sql.Identifier(schema, IGNORE_FUNCTION),
            marker=sql.SQL(IGNORE_MARKER),
            schema=sql.Literal(schema),
            name=sql.Literal(IGNORE_FUNCTION),
        ),
    )


def privilege_problems(cursor: Any, role: str) -> list[str]:
    """What ``role`` may do beyond the grants of `set_up`, or may not do that the app needs."""
    problems = []
    restricted = restricted_tables()
    cursor.execute(
        """
        SELECT c.relname, p.privilege, has_table_privilege(%s, c.oid, p.privilege)
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN unnest(%s::text[]) WITH ORDINALITY AS p(privilege, position)
        WHERE n.nspname = %s AND c.relkind IN ('r', 'p')
        ORDER BY c.relname, p.position
        """,
        [role, list(DML + NEVER), SCHEMA],
    )
    excess: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}
    for table, privilege, has in cursor.fetchall():
        allowed = restricted.get(table, DML)
        if has and privilege not in allowed:
            excess.setdefault(privilege, []).append(table)
        elif not has and privilege in allowed:
            missing.setdefault(privilege, []).append(table)
    problems += [f"can {privilege} {_names(tables)}" for privilege, tables in excess.items()]
    problems += [
        f"cannot {privilege} {_names(tables)}, which the application needs"
        for privilege, tables in missing.items()
    ]
    # Only superusers may set it, unless granted SET ON PARAMETER (PostgreSQL 15 and later).
    replication_role = (
        "has_parameter_privilege(%s, 'session_replication_role', 'SET')"
        if cursor.connection.info.server_version >= 150000
        else "%s IS NULL"
    )
    cursor.execute(
        "SELECT has_schema_privilege(%s, %s, 'CREATE'), "
        "has_database_privilege(%s, current_database(), 'CREATE'), "
        "has_database_privilege(%s, current_database(), 'TEMPORARY'), " + replication_role,
        [role, SCHEMA, role, role, role],
    )
    names = (
        f"can create objects in schema {SCHEMA}",
        "can create schemas in the database",
        "can create temporary tables (which shadow ours inside the trigger functions)",
        "can set session_replication_role (which switches triggers off)",
    )
    problems += [name for name, has in zip(names, cursor.fetchone(), strict=True) if has]
    return problems


def trigger_problems(cursor: Any) -> list[str]:
    """The pgtrigger triggers must be installed, enabled, and not ignorable by the app."""
    problems = []
    registered = pgtrigger.registered()
    for model, trigger in registered:
        table, name = model._meta.db_table, trigger.get_pgid(model)
        cursor.execute(
            "SELECT t.tgenabled FROM pg_catalog.pg_trigger t "
            "JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND t.tgname = %s",
            [SCHEMA, table, name],
        )
        row = cursor.fetchone()
        if row is None:
            problems.append(f"trigger {trigger.name} on {table} is not installed (run migrate)")
        elif row[0] not in ("O", "A"):
            problems.append(f"trigger {trigger.name} on {table} is disabled")
    cursor.execute(
        "SELECT p.prosrc FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n "
        "ON n.oid = p.pronamespace WHERE n.nspname = %s AND p.proname = %s",
        [pgtrigger.features.schema(), IGNORE_FUNCTION],
    )
    sources = [row[0] for row in cursor.fetchall()]
    if registered and not all(IGNORE_MARKER in source for source in sources):
        problems.append(
            "any session can switch the triggers off with the pgtrigger.ignore setting "
            f"({IGNORE_FUNCTION} was reinstalled by a migration)"
        )
    return problems
