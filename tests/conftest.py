"""Shared personas, an injectable clock and API clients."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from portal import clock as clock_module
from portal import services
from portal.gate import entry_point
from tests.browser import browser  # noqa: F401  (fixture)
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


def api_client_for(user: Any) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api() -> Any:
    return api_client_for


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # Personas are created per test; a deliberately slow hash only slows the suite down.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
