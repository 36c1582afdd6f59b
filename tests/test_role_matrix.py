"""Every page and API endpoint, found by walking the URL conf, against the role matrix:
anonymous visitors are sent to the login page (pages) or answered 401 (API); a reader may look
at everything but every write answers 403 and changes nothing.

A new URL whose arguments this file cannot fill fails the test, so nothing escapes the walk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from guards import services as guard_services
from policies import services as policy_services
from portal.alerts import raise_alert
from portal.models import Alert, AuditRecord
from tests.conftest import PASSWORD
from tests.factories import make_vault
from vaults import services as vault_services
from vaults.jobs import requests

WRITE_METHODS = ("post", "put", "patch", "delete")
# Pages anyone may open: the load balancer's and the monitor's probes, the login form and the API
# description.
PUBLIC = {
    "healthz",
    "healthz-background",
    "login",
    "logout",
    "api-schema",
    "api-docs",
    "api-token",
    "favicon",
}
# What every account does for itself, whatever its role (tests/test_users_api.py).
SELF_SERVICE = {"api-password"}
LOGIN_URL = reverse(settings.LOGIN_URL) if "/" not in settings.LOGIN_URL else settings.LOGIN_URL


@dataclass(frozen=True)
class Endpoint:
    route: str
    name: str
    kwargs: tuple[str, ...]
    methods: tuple[str, ...]  # for DRF views, the ones routed; for pages, unknown (empty)

    @property
    def is_api(self) -> bool:
        return self.route.startswith("api/")


def _route(pattern: Any) -> str:
    return str(pattern.pattern).replace("^", "").replace("$", "")


def walk(patterns: list[Any] | None = None, prefix: str = "", namespace: str = "") -> list[Any]:
    found: list[Endpoint] = []
    for pattern in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(pattern, URLResolver):
            if _route(pattern).startswith("admin/"):
                continue  # Django's admin: its own login, checked on its own below
            inner = f"{namespace}:{pattern.namespace}" if pattern.namespace else namespace
            found += walk(pattern.url_patterns, prefix + _route(pattern), inner)
            continue
        assert isinstance(pattern, URLPattern)
        if pattern.name is None:
            continue
        name = f"{namespace}:{pattern.name}".lstrip(":")
        actions = getattr(pattern.callback, "actions", None) or {}
        view_class = getattr(pattern.callback, "cls", None) or getattr(
            pattern.callback, "view_class", None
        )
        methods: tuple[str, ...] = tuple(actions)
        if not methods and view_class is not None and name.startswith("api-"):
            methods = tuple(
                m for m in ("get", "post", "put", "patch", "delete") if hasattr(view_class, m)
            )
        kwargs = tuple(pattern.pattern.regex.groupindex)
        found.append(Endpoint(prefix + _route(pattern), name, kwargs, methods))
    return found


ENDPOINTS = walk()


@pytest.fixture
def world(admin: Any, security_admin: Any, reader: Any, tmp_path: Path) -> dict[str, Any]:
    """One object of every kind a URL can name."""
    vault = make_vault(admin, name="matrix")
    policy = policy_services.policy_create(actor=admin, vault=vault, name="daily", daily_days=30)
    item = vault_services.item_protect(
        actor=admin, vault=vault, name="files", source_path=str(tmp_path), policy=policy
    )
    point = vault_services.point_record(item=item)
    guard = guard_services.guard_create(actor=security_admin, name="guard-one")
    approval = vault_services.immutability_lock_request(
        actor=admin, vault=vault, confirmation=vault.name
    )
    elevation = guard_services.elevation_request(
        actor=admin, guard=guard, justification="matrix", duration_minutes=30
    )
    job = requests.backup_request(actor=admin, item=item)
    alert = raise_alert("mua_removed", vault_name=vault.name, message="matrix")
    return {
        "vault": vault,
        "policy": policy,
        "item": item,
        "point": point,
        "guard": guard,
        "approval": approval,
        "elevation": elevation,
        "job": job,
        "alert": alert,
        "user": reader,
        "audit": AuditRecord.objects.order_by("-id").first(),
    }


def fill(endpoint: Endpoint, w: dict[str, Any]) -> dict[str, Any]:
    """URL arguments from the world, chosen by what the route names."""
    route = endpoint.route
    values: dict[str, Any] = {}
    for kwarg in endpoint.kwargs:
        if kwarg == "name":
            guards = route.startswith(("resource-guards/", "api/v1/resource-guards"))
            values[kwarg] = w["guard"].name if guards else w["vault"].name
        elif kwarg == "pk":
            values[kwarg] = _pk_for(route, w)
        elif kwarg in {"point_pk", "id"}:
            values[kwarg] = w["point"].pk
        elif kwarg == "item":
            values[kwarg] = w["item"].name
        elif kwarg == "policy":
            values[kwarg] = w["policy"].name
        elif kwarg == "blade":
            values[kwarg] = "properties"
        elif kwarg == "action":
            values[kwarg] = "acknowledge" if route.startswith("alerts/") else "approve"
        elif kwarg == "format":
            values[kwarg] = "json"
        elif kwarg == "username":
            values[kwarg] = w["user"].username
        else:
            pytest.fail(f"{route}: no value for URL argument {kwarg!r}; teach fill() about it")
    return values


PK_BY_PREFIX = [
    ("resource-guards/elevations/", "elevation"),
    ("jobs/items/", "item"),
    ("jobs/points/", "point"),
    ("api/v1/jobs/", "job"),
    ("jobs/", "job"),
    ("approvals/", "approval"),
    ("api/v1/approvals/", "approval"),
    ("alerts/", "alert"),
    ("users/", "user"),
    ("api/v1/audit/", "audit"),
]


def _pk_for(route: str, w: dict[str, Any]) -> int:
    for prefix, key in PK_BY_PREFIX:
        if route.startswith(prefix):
            return w[key].pk
    if "/recovery-points/" in route or "/points/" in route:
        return w["point"].pk
    if "/policies/" in route:
        return w["policy"].pk
    if "/items/" in route:
        return w["item"].pk
    pytest.fail(f"{route}: which object does <pk> name? teach _pk_for() about it")


def url_of(endpoint: Endpoint, w: dict[str, Any]) -> str:
    return reverse(endpoint.name, kwargs=fill(endpoint, w))


def test_the_walk_finds_pages_and_api_endpoints() -> None:
    names = {endpoint.name for endpoint in ENDPOINTS}
    assert {"vaults:list", "audit", "approval-decide", "vault-lock", "api-point-detail"} <= names
    assert len(ENDPOINTS) > 60


@pytest.mark.django_db
def test_every_page_sends_anonymous_visitors_to_the_login_page(
    client: Any, world: dict[str, Any]
) -> None:
    pages = [e for e in ENDPOINTS if not e.is_api and e.name not in PUBLIC]
    wrong = []
    for endpoint in pages:
        url = url_of(endpoint, world)
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            target = response.headers.get("Location", "")
            if response.status_code != 302 or not target.startswith(LOGIN_URL):
                wrong.append(f"{method.upper()} {url}: {response.status_code} {target}")
    assert wrong == [], "\n".join(wrong)
    assert len(pages) > 40


@pytest.mark.django_db
def test_public_pages_answer_without_a_login(client: Any, world: dict[str, Any]) -> None:
    for name in ("healthz", "login", "api-schema", "api-docs"):
        assert client.get(reverse(name)).status_code == 200, name


@pytest.mark.django_db
def test_the_admin_site_sends_anonymous_visitors_and_readers_to_its_login(
    client: Any, reader: Any
) -> None:
    admin_login = reverse("admin:login")
    for login in (False, True):
        if login:
            client.login(username=reader.username, password=PASSWORD)
        response = client.get(reverse("admin:index"))
        assert response.status_code == 302
        assert response.headers["Location"].startswith(admin_login)


@pytest.mark.django_db
def test_every_api_endpoint_answers_401_to_anonymous_callers(world: dict[str, Any]) -> None:
    client = APIClient(raise_request_exception=False)
    apis = [e for e in ENDPOINTS if e.is_api and e.name not in PUBLIC]
    wrong = []
    for endpoint in apis:
        url = url_of(endpoint, world)
        for method in endpoint.methods or ("get", "post"):
            response = getattr(client, method)(url, {}, format="json")
            body = response.json() if response.status_code == 401 else None
            if response.status_code != 401 or body.get("code") != "not_authenticated":
                wrong.append(f"{method.upper()} {url}: {response.status_code}")
    assert wrong == [], "\n".join(wrong)
    assert len(apis) > 30


def _allowed_since(mark: int) -> list[str]:
    records = AuditRecord.objects.filter(pk__gt=mark, outcome=AuditRecord.Outcome.ALLOWED)
    return [f"{r.operation} {r.target}" for r in records]


def bodies(w: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A well-formed request body per write endpoint, so the call reaches the role check
    instead of stopping at input validation."""
    future = (timezone.now() + timedelta(days=400)).isoformat()
    return {
        "vault-list": {"name": "other", "kind": "backup", "region": "westeurope"},
        "vault-immutability": {"state": "enabled"},
        "vault-lock": {"confirmation": w["vault"].name},
        "vault-resource-guard": {"guard": w["guard"].name},
        "api-vault-replica": {"vault": w["vault"].name},
        "vault-soft-delete": {"retention_days": 30},
        "api-policy-list": {"name": "weekly", "retention": {"daily_days": 30}},
        "api-policy-detail": {"retention": {"daily_days": 60}},
        "api-item-list": {
            "name": "more",
            "source": {"kind": "directory", "path": w["item"].source_path},
            "policy": w["policy"].name,
        },
        "api-item-detail": {"policy": w["policy"].name},
        "api-item-stop-protection": {"delete_data": False},
        "api-point-detail": {"retain_until": future},
        "api-point-restore": {"target_path": "/tmp/holdfast-matrix"},
        "resource-guard-list": {"name": "guard-two"},
        "resource-guard-detail": {"description": "changed"},
        "resource-guard-access-requests": {"justification": "matrix", "duration_minutes": 30},
        "approval-deny": {"reason": "no"},
        "approval-revoke": {"reason": "no"},
        "user-list": {"username": "newbie", "password": "a-long-passphrase", "role": "reader"},
        "user-detail": {"role": "operator"},
    }


@pytest.mark.django_db
def test_every_api_write_answers_403_to_a_reader_and_changes_nothing(
    api: Any, reader: Any, world: dict[str, Any]
) -> None:
    client = api(reader)
    client.raise_request_exception = False
    mark = AuditRecord.objects.order_by("-id").values_list("id", flat=True)[0]
    payloads = bodies(world)
    writes = [
        (e, m)
        for e in ENDPOINTS
        if e.is_api and e.name not in PUBLIC | SELF_SERVICE
        for m in e.methods
        if m in WRITE_METHODS
    ]
    wrong = []
    for endpoint, method in writes:
        url = url_of(endpoint, world)
        body = payloads.get(endpoint.name, {})
        response = getattr(client, method)(url, body, format="json")
        code = response.json().get("code") if response.status_code == 403 else None
        if response.status_code != 403 or code != "permission_denied":
            wrong.append(f"{method.upper()} {url}: {response.status_code} {response.content[:120]}")
    assert wrong == [], "\n".join(wrong)
    assert _allowed_since(mark) == []
    assert len(writes) > 20


@pytest.mark.django_db
def test_a_reader_sees_every_api_list_and_detail(
    api: Any, reader: Any, world: dict[str, Any]
) -> None:
    client = api(reader)
    client.raise_request_exception = False
    wrong = []
    for endpoint in ENDPOINTS:
        if not endpoint.is_api or endpoint.name in PUBLIC or "get" not in endpoint.methods:
            continue
        url = url_of(endpoint, world)
        response = client.get(url)
        expected = 403 if endpoint.name in READER_FORBIDDEN_API else 200
        if response.status_code != expected:
            wrong.append(f"GET {url}: {response.status_code}")
    assert wrong == [], "\n".join(wrong)


# Accounts are read by superusers and security admins only (SPEC 5).
READER_FORBIDDEN_API = {"user-list", "user-detail"}


# Pages a reader may not open at all: installation administration, and the forms that start
# a backup or a restore (operators and up).
READER_FORBIDDEN_PAGES = {
    "users",
    "user-update",
    "user-authenticator-reset",
    "jobs:backup",
    "jobs:restore",
}
# The file browser of a point needs its stored manifest; the world's points have none.
NEEDS_STORED_DATA = {"vaults:point-browse"}


@pytest.mark.django_db
def test_a_reader_sees_every_page_and_no_page_write_succeeds(
    client: Any, reader: Any, world: dict[str, Any]
) -> None:
    client.login(username=reader.username, password=PASSWORD)
    client.raise_request_exception = False
    mark = AuditRecord.objects.order_by("-id").values_list("id", flat=True)[0]
    pages = [e for e in ENDPOINTS if not e.is_api and e.name not in PUBLIC]
    wrong = []
    for endpoint in pages:
        url = url_of(endpoint, world)
        response = client.get(url)
        expected = {403, 405} if endpoint.name in READER_FORBIDDEN_PAGES else {200, 405}
        if endpoint.name in NEEDS_STORED_DATA:
            expected = {200, 404}
        if response.status_code not in expected:
            wrong.append(f"GET {url}: {response.status_code}")
        response = client.post(url, {"confirmation": world["vault"].name})
        if response.status_code >= 500:
            wrong.append(f"POST {url}: {response.status_code}")
    assert wrong == [], "\n".join(wrong)
    # Whatever each page answered (403, a form error, a message), nothing was allowed.
    assert _allowed_since(mark) == []
    assert Alert.objects.filter(acknowledged_by__isnull=False).count() == 0
