"""Backup center: the portfolio's filters, sorting, CSV export and query counts, the protected
items view with RPO, the dashboard, and a reader who can see everything and change nothing.

These are read-side tests: the rows are laid down directly (states as data); the gate's rules
for reaching those states are tested in test_immutability, test_soft_delete and test_mua.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from guards.models import ResourceGuard
from policies.models import Policy
from portal import clock as clock_module
from portal.models import Alert
from tests.conftest import make_user
from tests.factories import make_vault
from vaults.models import Job, ProtectedItem, RecoveryPoint, Vault
from vaults.selectors import with_portfolio_columns

pytestmark = pytest.mark.django_db

# name: (kind, region, immutability, soft delete, MUA, tags) -> security level in the comment
VAULTS = {
    "alpha-prod": ("recovery_services", "westeurope", "disabled", "enabled", False,
                   {"env": "prod", "team": "web"}),                        # fair
    "bravo-locked": ("backup", "eastus", "locked", "enabled", False,
                     {"env": "prod", "team": "db"}),                       # good
    "charlie-enabled": ("archive", "westeurope", "enabled", "enabled", False,
                        {"env": "dev"}),                                   # good
    "delta-poor": ("recovery_services", "eastus", "disabled", "disabled", False, {}),  # poor
    "echo-excellent": ("backup", "westeurope", "locked", "always_on", True,
                       {"env": "prod", "legal-hold": ""}),                 # excellent
    "foxtrot-mua": ("recovery_services", "northeurope", "enabled", "disabled", True,
                    {"team": "web"}),                                      # poor
    "golf-always": ("archive", "northeurope", "disabled", "always_on", True,
                    {"env": "dev"}),                                       # fair
}  # fmt: skip

LEVELS = {
    "alpha-prod": "fair",
    "bravo-locked": "good",
    "charlie-enabled": "good",
    "delta-poor": "poor",
    "echo-excellent": "excellent",
    "foxtrot-mua": "poor",
    "golf-always": "fair",
}

ALL = set(VAULTS)

# Each filter alone, then combinations: query string -> exactly these vaults.
FILTER_CASES = [
    ("", ALL),
    ("immutability=disabled", {"alpha-prod", "delta-poor", "golf-always"}),
    ("immutability=enabled", {"charlie-enabled", "foxtrot-mua"}),
    ("immutability=locked", {"bravo-locked", "echo-excellent"}),
    ("soft_delete=enabled", {"alpha-prod", "bravo-locked", "charlie-enabled"}),
    ("soft_delete=disabled", {"delta-poor", "foxtrot-mua"}),
    ("soft_delete=always_on", {"echo-excellent", "golf-always"}),
    ("mua=true", {"echo-excellent", "foxtrot-mua", "golf-always"}),
    ("mua=false", {"alpha-prod", "bravo-locked", "charlie-enabled", "delta-poor"}),
    ("security_level=excellent", {"echo-excellent"}),
    ("security_level=good", {"bravo-locked", "charlie-enabled"}),
    ("security_level=fair", {"alpha-prod", "golf-always"}),
    ("security_level=poor", {"delta-poor", "foxtrot-mua"}),
    ("kind=backup", {"bravo-locked", "echo-excellent"}),
    ("kind=archive", {"charlie-enabled", "golf-always"}),
    ("region=westeurope", {"alpha-prod", "charlie-enabled", "echo-excellent"}),
    ("region=EASTUS", {"bravo-locked", "delta-poor"}),
    ("tag=env=prod", {"alpha-prod", "bravo-locked", "echo-excellent"}),
    ("tag=env", {"alpha-prod", "bravo-locked", "charlie-enabled", "echo-excellent", "golf-always"}),
    ("tag=team=web", {"alpha-prod", "foxtrot-mua"}),
    ("tag=legal-hold", {"echo-excellent"}),
    ("tag=env=staging", set()),
    ("search=ALPHA", {"alpha-prod"}),
    ("search=locked", {"bravo-locked"}),
    ("immutability=locked&security_level=excellent", {"echo-excellent"}),
    ("immutability=locked&mua=false", {"bravo-locked"}),
    ("soft_delete=always_on&kind=archive", {"golf-always"}),
    ("tag=env=prod&mua=false", {"alpha-prod", "bravo-locked"}),
    ("region=westeurope&tag=env=prod&mua=false", {"alpha-prod"}),
    ("tag=env=prod&immutability=locked&kind=backup&security_level=good", {"bravo-locked"}),
    ("kind=recovery_services&security_level=poor&region=northeurope", {"foxtrot-mua"}),
    ("immutability=enabled&soft_delete=always_on", set()),
    ("search=o&tag=team", {"alpha-prod", "foxtrot-mua", "bravo-locked"}),
]


@pytest.fixture
def portfolio(security_admin: Any) -> dict[str, Vault]:
    guard = ResourceGuard.objects.create(name="guard-one", owner=security_admin)
    vaults = {}
    for name, (kind, region, immutability, soft_delete, mua, tags) in VAULTS.items():
        vaults[name] = Vault.objects.create(
            name=name,
            kind=kind,
            region=region,
            immutability=immutability,
            soft_delete_state=soft_delete,
            resource_guard=guard if mua else None,
            tags=tags,
        )
    return vaults


def _page_names(response: Any) -> set[str]:
    assert response.status_code == 200
    return {vault.name for vault in response.context["page"]}


def _api_names(response: Any) -> set[str]:
    assert response.status_code == 200, response.content
    return {row["name"] for row in response.json()["results"]}


@pytest.mark.parametrize(("query", "expected"), FILTER_CASES)
def test_each_filter_and_combination_returns_exactly_the_right_vaults(
    portfolio: dict[str, Vault], reader: Any, client: Client, api: Any, query: str, expected: set
) -> None:
    client.force_login(reader)
    assert _page_names(client.get(f"/backup-center/?{query}")) == expected
    assert _page_names(client.get(f"/?{query}")) == expected
    assert _api_names(api(reader).get(f"/api/v1/vaults/?{query}")) == expected


def test_security_level_in_sql_agrees_with_the_property(portfolio: dict[str, Vault]) -> None:
    for vault in with_portfolio_columns(Vault.objects.all()):
        assert vault.level_db == vault.security_level == LEVELS[vault.name]


@pytest.mark.parametrize(
    ("sort", "first", "last"),
    [
        ("name", "alpha-prod", "golf-always"),
        ("-name", "golf-always", "alpha-prod"),
        ("security_level", "echo-excellent", "foxtrot-mua"),
        ("-security_level", "delta-poor", "echo-excellent"),
        ("region", "bravo-locked", "echo-excellent"),
        ("-items", "alpha-prod", "golf-always"),
        ("-storage", "bravo-locked", "golf-always"),
    ],
)
def test_columns_sort_with_name_as_the_tie_breaker(
    portfolio: dict[str, Vault], items: Any, reader: Any, client: Client, sort: str, first: str,
    last: str,
) -> None:  # fmt: skip
    client.force_login(reader)
    names = [v.name for v in client.get(f"/backup-center/?sort={sort}").context["page"]]
    assert (names[0], names[-1]) == (first, last)


def test_the_page_shows_every_column_as_text(
    portfolio: dict[str, Vault], items: Any, reader: Any, client: Client
) -> None:
    client.force_login(reader)
    page = client.get("/backup-center/?search=bravo").content.decode()
    for text in ["bravo-locked", "Backup vault", "eastus", ">Locked<", "Soft delete on",
                 "Good", "Completed", "Vault-standard tier\">Standard</span> 3.0\xa0KB",
                 "env=prod"]:  # fmt: skip
        assert text in page, text
    row = client.get("/backup-center/?search=bravo").context["page"][0]
    assert (row.item_count, row.last_backup_status) == (2, "completed")


def test_htmx_gets_only_the_results_and_the_url_is_bookmarkable(
    portfolio: dict[str, Vault], reader: Any, client: Client
) -> None:
    client.force_login(reader)
    partial = client.get("/backup-center/?immutability=locked", headers={"HX-Request": "true"})
    body = partial.content.decode()
    assert "<html" not in body and 'id="results"' in body
    assert "bravo-locked" in body and "alpha-prod" not in body
    full = client.get("/backup-center/?immutability=locked&sort=-name").content.decode()
    assert 'hx-push-url="true"' in full
    assert 'value="locked" selected' in full  # the filter state comes back from the URL


def test_pagination_keeps_the_filters(admin: Any, reader: Any, client: Client) -> None:
    Vault.objects.bulk_create(
        Vault(name=f"v{i:03d}", kind="backup", region="r1" if i % 2 else "r2") for i in range(120)
    )
    client.force_login(reader)
    first = client.get("/backup-center/?region=r1")
    assert len(first.context["page"]) == 50 and first.context["page"].paginator.count == 60
    assert "?region=r1&page=2" in first.content.decode()
    second = client.get("/backup-center/?region=r1&page=2")
    assert {v.region for v in second.context["page"]} == {"r1"}


@pytest.mark.parametrize(
    "query",
    ["", "immutability=locked", "tag=env=prod&mua=false", "security_level=poor", "kind=archive"],
)
def test_csv_export_matches_the_filter(
    portfolio: dict[str, Vault], items: Any, reader: Any, client: Client, query: str
) -> None:
    client.force_login(reader)
    response = client.get(f"/backup-center/export.csv?{query}")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    expected = dict(FILTER_CASES)[query]
    assert {row["name"] for row in rows} == expected
    assert len(rows) == len(expected)
    by_name = {row["name"]: row for row in rows}
    if "bravo-locked" in by_name:
        bravo = by_name["bravo-locked"]
        assert (bravo["data_lock"], bravo["security_level"], bravo["protected_items"]) == (
            "Locked",
            "good",
            "2",
        )
        assert bravo["storage_standard_bytes"] == "3072"


# --- a reader sees everything and changes nothing --------------------------------------------

READER_PAGES = ["/", "/backup-center/", "/items/", "/dashboard/", "/backup-center/export.csv"]


@pytest.mark.parametrize("path", READER_PAGES)
def test_a_reader_gets_every_backup_center_page_without_action_controls(
    portfolio: dict[str, Vault], items: Any, reader: Any, client: Client, path: str
) -> None:
    client.force_login(reader)
    response = client.get(path)
    assert response.status_code == 200
    if response.streaming:
        return
    page = response.content.decode()
    # The only POST form is the top bar's sign-out; no hx-post/put/delete anywhere.
    assert page.count('method="post"') == 1 and "Sign out" in page
    for attribute in ("hx-post", "hx-put", "hx-patch", "hx-delete", "Create vault"):
        assert attribute not in page


API_WRITES = [
    ("post", "/api/v1/vaults/", {"name": "new-one", "kind": "backup", "region": "eastus"}),
    ("delete", "/api/v1/vaults/alpha-prod/", None),
    ("post", "/api/v1/vaults/alpha-prod/immutability/", {"state": "enabled"}),
    ("post", "/api/v1/vaults/bravo-locked/immutability/", {"state": "disabled"}),
    ("post", "/api/v1/vaults/alpha-prod/immutability/lock/", {"confirmation": "alpha-prod"}),
    ("patch", "/api/v1/vaults/alpha-prod/soft-delete/", {"state": "disabled",
                                                          "confirm_purge_count": 0}),
    ("put", "/api/v1/vaults/alpha-prod/resource-guard/", {"guard": "guard-one"}),
    ("delete", "/api/v1/vaults/echo-excellent/resource-guard/", None),
    ("post", "/api/v1/vaults/alpha-prod/policies/", {"name": "p2", "kind": "standard"}),
    ("post", "/api/v1/vaults/alpha-prod/items/", {"name": "i2", "policy": "weekly",
                                                   "source": {"kind": "directory",
                                                              "path": "/tmp"}}),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body"), API_WRITES)
def test_a_reader_gets_403_on_every_api_write(
    portfolio: dict[str, Vault], items: Any, reader: Any, api: Any, method: str, path: str,
    body: Any,
) -> None:  # fmt: skip
    before = list(Vault.objects.order_by("name").values())
    response = getattr(api(reader), method)(path, body, format="json")
    assert response.status_code == 403, response.content
    assert response.json()["code"] == "permission_denied"
    assert list(Vault.objects.order_by("name").values()) == before


PAGE_WRITES = [
    ("/vaults/new/", {"name": "web-new", "kind": "backup", "region": "eastus"}),
    ("/vaults/alpha-prod/immutability/change/", {"state": "enabled"}),
    ("/vaults/alpha-prod/immutability/lock/", {"confirmation": "alpha-prod"}),
    ("/vaults/alpha-prod/delete/", {"confirmation": "alpha-prod"}),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body"), PAGE_WRITES)
def test_a_reader_gets_403_on_every_page_write(
    portfolio: dict[str, Vault], reader: Any, client: Client, path: str, body: dict
) -> None:
    client.force_login(reader)
    before = list(Vault.objects.order_by("name").values())
    response = client.post(path, body)
    assert response.status_code == 403
    assert list(Vault.objects.order_by("name").values()) == before


# --- query counts do not grow with rows ------------------------------------------------------


def _populate(count: int, owner: Any) -> None:
    """``count`` vaults, half with MUA, each with an item, points in every tier and a job."""
    guard = ResourceGuard.objects.create(name=f"g{count}", owner=owner)
    Vault.objects.bulk_create(
        Vault(
            name=f"q{count}-{i:04d}",
            kind="backup",
            region="westeurope",
            immutability=["disabled", "enabled", "locked"][i % 3],
            resource_guard=guard if i % 2 else None,
            tags={"env": "prod"},
        )
        for i in range(count)
    )
    now = clock_module.now()
    for vault in Vault.objects.filter(name__startswith=f"q{count}-"):
        policy = Policy.objects.create(vault=vault, name="daily")
        item = ProtectedItem.objects.create(
            vault=vault, name="files", source_path="/srv", policy=policy, last_backup_at=now
        )
        RecoveryPoint.objects.bulk_create(
            RecoveryPoint(vault=vault, item=item, tier=tier, created_at=now,
                          expires_at=now + timedelta(days=30), stored_bytes=1024)
            for tier in ("snapshot", "vault_standard", "vault_archive")
        )  # fmt: skip
        Job.objects.create(kind="backup", status="completed", vault=vault, item=item,
                           created_at=now)  # fmt: skip


def _count(callable_: Any) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = callable_()
        assert response.status_code == 200
        if getattr(response, "streaming", False):
            b"".join(response.streaming_content)
    return len(queries)


@pytest.mark.parametrize(
    "path",
    [
        "/backup-center/",
        "/backup-center/?sort=-storage&mua=true",
        "/backup-center/?security_level=good&tag=env=prod",
        "/items/",
        "/dashboard/",
        "/backup-center/export.csv",
    ],
)
def test_page_query_count_is_the_same_at_10_and_200_vaults(
    security_admin: Any, reader: Any, client: Client, path: str
) -> None:
    client.force_login(reader)
    _populate(10, security_admin)
    client.get(path)  # warm the per-process caches (content types, permissions)
    small = _count(lambda: client.get(path))
    _populate(190, security_admin)
    large = _count(lambda: client.get(path))
    assert small == large


@pytest.mark.parametrize("path", ["/api/v1/vaults/", "/api/v1/vaults/?security_level=good&tag=env"])
def test_api_list_query_count_is_the_same_at_10_and_200_vaults(
    security_admin: Any, reader: Any, api: Any, path: str
) -> None:
    client = api(reader)
    _populate(10, security_admin)
    client.get(path)
    small = _count(lambda: client.get(path))
    _populate(190, security_admin)
    large = _count(lambda: client.get(path))
    assert small == large
    assert client.get(path).json()["count"] > 50


def test_api_list_has_the_portfolio_columns(
    portfolio: dict[str, Vault], items: Any, reader: Any, api: Any
) -> None:
    rows = {r["name"]: r for r in api(reader).get("/api/v1/vaults/").json()["results"]}
    bravo = rows["bravo-locked"]
    assert bravo["security_level"] == "good" and bravo["data_lock"] == "Locked"
    assert bravo["protected_items"] == 2
    assert bravo["last_backup"]["status"] == "completed"
    assert bravo["storage_bytes"] == {"snapshot": 1024, "standard": 3072, "archive": 0}
    detail = api(reader).get("/api/v1/vaults/bravo-locked/").json()
    assert detail["protected_items"] == 2


def test_api_serializer_annotates_a_vault_returned_by_a_write(admin: Any, api: Any) -> None:
    response = api(admin).post(
        "/api/v1/vaults/", {"name": "fresh", "kind": "backup", "region": "eastus"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["protected_items"] == 0
    assert response.json()["last_backup"] == {"status": None, "at": None}


# --- protected items and RPO -----------------------------------------------------------------


@pytest.fixture
def items(portfolio: dict[str, Vault], clock: Any) -> dict[str, ProtectedItem]:
    """Items on daily, weekly and hourly policies, inside and outside their RPO window."""
    now = clock.now()
    bravo, alpha = portfolio["bravo-locked"], portfolio["alpha-prod"]
    daily = Policy.objects.create(vault=bravo, name="daily", frequency="daily")
    weekly = Policy.objects.create(vault=alpha, name="weekly", frequency="weekly")
    hourly = Policy.objects.create(
        vault=alpha, name="hourly", kind="enhanced", frequency="hourly", interval_hours=6
    )
    rows = [
        # name, vault, policy, state, last backup age
        ("db-fresh", bravo, daily, "protected", timedelta(hours=24, minutes=59)),
        ("db-late", bravo, daily, "protected", timedelta(hours=25, minutes=1)),
        ("files-weekly", alpha, weekly, "protected", timedelta(days=7, minutes=30)),
        ("files-hourly-late", alpha, hourly, "protected", timedelta(hours=7, minutes=5)),
        ("files-hourly-ok", alpha, hourly, "protected", timedelta(hours=6, minutes=55)),
        ("files-never", alpha, weekly, "protected", None),
        ("files-stopped", alpha, weekly, "protection_stopped", timedelta(days=30)),
    ]
    made = {}
    for name, vault, policy, state, age in rows:
        made[name] = ProtectedItem.objects.create(
            vault=vault,
            name=name,
            source_path=f"/srv/{name}",
            policy=policy,
            protection_state=state,
            last_backup_at=None if age is None else now - age,
        )
    points = [("snapshot", 1024), ("vault_standard", 1024), ("snapshot_and_vault", 2048)]
    for tier, size in points:
        RecoveryPoint.objects.create(
            vault=bravo,
            item=made["db-fresh"],
            tier=tier,
            created_at=now - timedelta(days=1),
            expires_at=now + timedelta(days=30),
            stored_bytes=size,
        )
    statuses = [("db-fresh", "failed", 2), ("db-fresh", "completed", 1), ("db-late", "failed", 3),
                ("files-weekly", "running", 1)]  # fmt: skip
    for name, status, hours_ago in statuses:
        item = made[name]
        Job.objects.create(kind="backup", status=status, vault=item.vault, item=item,
                           created_at=now - timedelta(hours=hours_ago))  # fmt: skip
    Job.objects.create(kind="restore", status="failed", vault=bravo, item=made["db-late"],
                       created_at=now)  # fmt: skip
    return made


ITEM_CASES = [
    ("", {"db-fresh", "db-late", "files-weekly", "files-hourly-late", "files-hourly-ok",
          "files-never", "files-stopped"}),
    ("rpo=met", {"db-fresh", "files-weekly", "files-hourly-ok"}),
    ("rpo=missed", {"db-late", "files-hourly-late", "files-never"}),
    ("vault=bravo-locked", {"db-fresh", "db-late"}),
    ("policy=hourly", {"files-hourly-late", "files-hourly-ok"}),
    ("protection_state=protection_stopped", {"files-stopped"}),
    ("last_backup=completed", {"db-fresh"}),
    ("last_backup=failed", {"db-late"}),
    ("last_backup=running", {"files-weekly"}),
    ("last_backup=none", {"files-hourly-late", "files-hourly-ok", "files-never", "files-stopped"}),
    ("vault=alpha-prod&rpo=missed", {"files-hourly-late", "files-never"}),
    ("vault=alpha-prod&policy=weekly&protection_state=protected", {"files-weekly", "files-never"}),
]  # fmt: skip


@pytest.mark.parametrize(("query", "expected"), ITEM_CASES)
def test_items_view_filters_across_vaults(
    items: dict[str, ProtectedItem], reader: Any, client: Client, query: str, expected: set
) -> None:
    client.force_login(reader)
    response = client.get(f"/items/?{query}")
    assert response.status_code == 200
    assert {item.name for item in response.context["page"]} == expected


def test_items_view_shows_rpo_and_links_the_jobs_page(
    items: dict[str, ProtectedItem], reader: Any, client: Client
) -> None:
    client.force_login(reader)
    page = client.get("/items/?vault=bravo-locked").content.decode()
    assert "RPO met" in page and "RPO missed" in page and 'href="/jobs/"' in page
    stopped = client.get("/items/?protection_state=protection_stopped").context["page"][0]
    assert stopped.rpo_state == ""


# --- dashboard -------------------------------------------------------------------------------


def test_dashboard_cards_count_what_they_say(
    items: dict[str, ProtectedItem], reader: Any, client: Client, clock: Any
) -> None:
    now = clock.now()
    Job.objects.create(kind="backup", status="completed", created_at=now - timedelta(hours=30))
    Alert.objects.create(kind="backup_failed", category="job", severity="warning",
                         message="x", first_at=now, last_at=now)  # fmt: skip
    Alert.objects.create(kind="mua_removed", category="security", severity="critical",
                         message="y", first_at=now, last_at=now, status="resolved")  # fmt: skip
    client.force_login(reader)
    response = client.get("/dashboard/")
    assert response.status_code == 200
    figures = response.context["figures"]
    assert dict((k, n) for k, n, _ in figures["jobs_by_status"]) == {
        "Queued": 0, "Running": 1, "Completed": 1, "Failed": 3,
    }  # fmt: skip
    assert (figures["rpo_met"], figures["rpo_missed"]) == (3, 3)
    assert dict((k, n) for _, n, k in figures["storage_now"]) == {
        "snapshot": 1024, "standard": 3072, "archive": 0,
    }  # fmt: skip
    assert sum(figures["storage_daily"]["standard"]) == 3072
    assert dict((k, n) for _, n, k in figures["levels"]) == {
        "excellent": 1, "good": 2, "fair": 2, "poor": 2,
    }  # fmt: skip
    assert dict((k, n) for _, n, k in figures["alerts"]) == {
        "critical": 0, "warning": 1, "info": 0,
    }  # fmt: skip
    page = response.content.decode()
    assert 'id="dashboard-data" type="application/json"' in page
    assert "/static/js/vendor/chart-4.6.1.umd.min.js" in page and "cdn" not in page.lower()


def test_home_is_the_backup_center_and_the_nav_links_are_real(admin: Any, client: Client) -> None:
    make_vault(admin, name="only-one")
    client.force_login(admin)
    page = client.get("/").content.decode()
    assert "<h1>Backup center</h1>" in page and "only-one" in page
    assert 'href="/backup-center/">Backup center' in page
    assert 'href="/items/">Protected items' in page


def test_a_user_without_a_role_is_refused(db: None, client: Client) -> None:
    nobody = make_user("nobody", "reader")
    nobody.groups.clear()
    client.force_login(nobody)
    for path in READER_PAGES:
        assert client.get(path).status_code == 403


# --- seed_scale ------------------------------------------------------------------------------


def test_seed_scale_loads_a_portfolio_and_refuses_a_database_with_vaults(db: None) -> None:
    from django.core.management import CommandError, call_command

    out = io.StringIO()
    call_command("seed_scale", vaults=30, items=200, points=1000, stdout=out)
    assert "recovery points:      1000 rows" in out.getvalue()
    assert Vault.objects.count() == 30
    assert ProtectedItem.objects.count() == 200
    assert RecoveryPoint.objects.count() == 1000
    assert (
        Job.objects.filter(kind="backup").count()
        == ProtectedItem.objects.filter(protection_state="protected").count()
    )
    # Every vault reads back through the portfolio's annotations, levels agreeing.
    for vault in with_portfolio_columns(Vault.objects.all()):
        assert vault.level_db == vault.security_level
    with pytest.raises(CommandError, match="already holds vaults"):
        call_command("seed_scale", vaults=1, items=1, points=1)
    call_command("seed_scale", vaults=5, items=5, points=5, yes_i_know=True, stdout=out)
    assert Vault.objects.count() == 35
