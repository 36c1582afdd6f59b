"""The application's database role, for tests that attack from its own connection."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from pathlib import Path
from typing import Any

import pgtrigger
import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
# Roles are cluster-wide: one name per test process, dropped after each test.
APP_ROLE = f"holdfast_app_test_{os.getpid()}"
APP_PASSWORD = "app-role-test-password"
BAD_ROLE = f"holdfast_bad_test_{os.getpid()}"

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="database roles exist on PostgreSQL only"
)


def execute(statement: str | sql.Composable, params: list[Any] | None = None) -> list[Any]:
    with connection.cursor() as cursor:
        if isinstance(statement, sql.Composable):
            statement = statement.as_string(cursor.connection)
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def drop_role(role: str) -> None:
    if not execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]):
        return
    name = sql.Identifier(role)
    execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(name))
    execute(sql.SQL("DROP OWNED BY {}").format(name))
    execute(sql.SQL("DROP ROLE {}").format(name))


def skip_unless_roles_can_be_created() -> None:
    rows = execute("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
    if not rows[0][0]:
        pytest.skip("the test database's role may not create roles")


def db_roles(*args: str, **options: Any) -> str:
    out = StringIO()
    call_command("db_roles", *args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def tcp_settings() -> dict[str, Any]:
    """Where the app role signs in: the tests' server over TCP, with a password (a Unix
    socket usually means peer authentication, which knows no such OS user)."""
    host = connection.settings_dict["HOST"]
    return {
        "host": host if host and not host.startswith("/") else "127.0.0.1",
        "port": connection.settings_dict["PORT"] or 5432,
        "dbname": connection.settings_dict["NAME"],
    }


def trigger_names() -> dict[str, str]:
    return {trigger.name: trigger.get_pgid(model) for model, trigger in pgtrigger.registered()}


@pytest.fixture
def app_role(transactional_db: None) -> Iterator[str]:
    """The application role, set up by the command and committed, so other connections see it."""
    skip_unless_roles_can_be_created()
    drop_role(APP_ROLE)
    db_roles(app_role=APP_ROLE, app_password=APP_PASSWORD)
    yield APP_ROLE
    drop_role(APP_ROLE)


@pytest.fixture
def as_app(app_role: str) -> Iterator[psycopg.Connection]:
    """A raw connection as the application role: what a compromised worker host holds."""
    with psycopg.connect(
        **tcp_settings(), user=app_role, password=APP_PASSWORD, autocommit=True
    ) as app_connection:
        yield app_connection


@contextmanager
def django_as(role: str, password: str) -> Iterator[None]:
    """Django's own connection as ``role`` for the block: the whole application as that role."""
    keys = ("USER", "PASSWORD", "HOST", "PORT")
    saved = {key: connection.settings_dict[key] for key in keys}
    tcp = tcp_settings()
    connection.close()
    connection.settings_dict.update(
        USER=role, PASSWORD=password, HOST=tcp["host"], PORT=str(tcp["port"])
    )
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)
