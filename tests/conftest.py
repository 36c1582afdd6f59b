"""Shared personas, an injectable clock and API clients."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from portal import clock as clock_module
from portal import services
from portal.gate import entry_point
from tests.browser import browser  # noqa: F401  (fixture)
from tests.dbroles import app_role, as_app  # noqa: F401  (fixtures)
from tests.factories import make_vault
from tests.s3server import ceph_server, moto_s3, moto_server, s3, s3_server  # noqa: F401

PASSWORD = "correct-horse-battery-staple"


def make_user(username: str, role: str, **extra: Any) -> Any:
    with entry_point("command"):
        return services.user_create(
            actor=None, username=username, role=role, password=PASSWORD, **extra
        )


@pytest.fixture
def admin(db: None) -> Any:
    return make_user("alice", "backup_admin")


@pytest.fixture
def admin2(db: None) -> Any:
    return make_user("bob", "backup_admin")


@pytest.fixture
def security_admin(db: None) -> Any:
    return make_user("sam", "security_admin")


@pytest.fixture
def security_admin2(db: None) -> Any:
    return make_user("sofia", "security_admin")


@pytest.fixture
def operator(db: None) -> Any:
    return make_user("oscar", "operator")


@pytest.fixture
def reader(db: None) -> Any:
    return make_user("rita", "reader")


@pytest.fixture
def superuser(db: None) -> Any:
    return make_user("root-admin", "backup_admin", is_superuser=True)


@pytest.fixture
def vault(admin: Any) -> Any:
    return make_vault(admin, name="vault-one")


@pytest.fixture
def clock() -> Iterator[Any]:
    """Freeze time at a known instant; tests move it with ``clock.advance``."""
    clock_module.set_now(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    yield clock_module
    clock_module.set_now(None)


def token_for(user: Any) -> str:
    """A fresh API token's key. The database keeps only its digest, so the key exists only
    here; issued by knox directly (``POST /api/v1/auth/token/`` does the same through the
    gate, which would add an audit record to every test that counts them)."""
    from knox.models import AuthToken

    _, key = AuthToken.objects.create(user=user)
    return key


def api_client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
    return client


@pytest.fixture
def api() -> Any:
    return api_client_for


@pytest.fixture(autouse=True)
def audit_anchor_dir(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Each test its own local store of audit anchors: an anchor written for one test's
    database must not be checked against another's (or a dev server's, under var/)."""
    settings.HOLDFAST_AUDIT_ANCHOR_DIR = tmp_path_factory.mktemp("audit-anchors")
    return settings.HOLDFAST_AUDIT_ANCHOR_DIR


@pytest.fixture(autouse=True)
def vault_storage_root(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Each test its own vault storage (tests that need a particular one set it again): a
    store left by another test's vault of the same name keeps that vault's data key, and a
    new vault refuses to write beside it (SPEC 3.11)."""
    settings.HOLDFAST_STORAGE_ROOT = tmp_path_factory.mktemp("storage")
    return settings.HOLDFAST_STORAGE_ROOT


@pytest.fixture(autouse=True)
def drill_root(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Each test its own drill scratch area: the jobs sweep removes scratch directories whose
    job (by id, in this test's database) is not running, so a shared one would lose another
    test's drill mid-way."""
    settings.HOLDFAST_DRILL_ROOT = tmp_path_factory.mktemp("drills")
    return settings.HOLDFAST_DRILL_ROOT


@pytest.fixture(autouse=True)
def audit_link_timing(request: pytest.FixtureRequest, settings: Any) -> None:
    """The gate links its audit records into the chain right after its commit
    (portal/audit_link.py). A test whose transaction is rolled back never commits, so there
    the records are linked inside the transaction instead; transactional tests commit, and
    use the production path."""
    marker = request.node.get_closest_marker("django_db")
    transactional = bool(marker and marker.kwargs.get("transaction")) or any(
        name in request.fixturenames for name in ("transactional_db", "live_server")
    )
    settings.HOLDFAST_AUDIT_LINK_IN_TRANSACTION = not transactional


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # Personas are created per test; a deliberately slow hash only slows the suite down.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
