"""The Backup center's summary tiles (issue 15): each count equals the rows of the list it
links to, the number of queries does not grow with the fleet, a reader sees them and no
action, and the vault storage totals the portfolio sorts on follow every write of a point.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from guards.models import ResourceGuard
from policies.models import Policy
from portal.models import Alert, Approval
from vaults.models import Job, ProtectedItem, RecoveryPoint, Vault


def _fleet(count: int, owner: Any, now: Any, prefix: str = "t") -> None:
    """``count`` vaults in every security setting, items in and out of their RPO, jobs in
    every status inside and outside the last 24 hours, alerts, approvals."""
    guard = ResourceGuard.objects.create(name=f"{prefix}g{count}", owner=owner)
    Vault.objects.bulk_create(
        Vault(
            name=f"{prefix}{count}-{i:03d}", kind="backup", region="westeurope",
            immutability=["disabled", "enabled", "locked"][i % 3],
            soft_delete_state=["enabled", "disabled", "always_on", "enabled"][i % 4],
            resource_guard=guard if i % 2 else None,
        )
        for i in range(count)
    )  # fmt: skip
    vaults = list(Vault.objects.filter(name__startswith=f"{prefix}{count}-"))
    for i, vault in enumerate(vaults):
        daily = Policy.objects.create(vault=vault, name="daily")
        hourly = Policy.objects.create(
            vault=vault, name="hourly", kind="enhanced", frequency="hourly", interval_hours=4
        )
        states = [("protected", now), ("protected", now - timedelta(days=3)),
                  ("protected", None), ("protection_stopped", now)]  # fmt: skip
        for n, (state, last) in enumerate(states):
            item = ProtectedItem.objects.create(
                vault=vault, name=f"i{n}", source_path="/srv", policy=hourly if n % 2 else daily,
                protection_state=state, last_backup_at=last,
            )  # fmt: skip
            for status, age in [("completed", 1), ("failed", 2), ("running", 0), ("queued", 30)]:
                Job.objects.create(
                    kind="backup", status=status, vault=vault, item=item,
                    created_at=now - timedelta(hours=age + n),
                )  # fmt: skip
        for severity, status in [("critical", "open"), ("warning", "open"), ("info", "resolved")]:
            Alert.objects.create(
                kind="backup_failed", category="job", severity=severity, status=status,
                vault_name=vault.name, message="m", first_at=now, last_at=now,
            )  # fmt: skip
        Approval.objects.create(
            kind="lock_immutability", requested_by=owner, vault=vault, created_at=now,
            expires_at=now + (timedelta(hours=1) if i % 2 else -timedelta(hours=1)),
        )  # fmt: skip
    Job.objects.create(kind="sweep", status="completed", created_at=now)  # no vault: listed


def _list_count(client: Client, url: str) -> int:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.context["page"].paginator.count


def test_every_tile_count_is_the_number_of_rows_its_link_lists(
    security_admin: Any, reader: Any, client: Client, clock: Any
) -> None:
    _fleet(12, security_admin, clock.now())
    client.force_login(reader)
    response = client.get("/backup-center/tiles/", headers={"HX-Request": "true"})
    tiles = response.context["tiles"]
    checked = 0
    for tile in tiles:
        if tile.total_url:
            assert tile.total == _list_count(client, tile.total_url), (tile.title, tile.total_url)
        for entry in tile.entries:
            assert entry.count == _list_count(client, entry.url), (tile.title, entry.label)
            checked += 1
    assert checked >= 20
    by_key = {tile.key: tile for tile in tiles}
    # The buckets are not all empty (the comparison above would hold on zeros too).
    assert by_key["jobs"].total == 12 * 4 * 3 + 1  # the 30-hour-old queued ones are out
    assert by_key["items"].total == 36 and by_key["items"].entries[0].count == 12 + 12
    assert by_key["alerts"].total == 24 and by_key["approvals"].total == 6
    levels = Counter(v.security_level for v in Vault.objects.all())  # the Python spelling
    assert {e.label.lower(): e.count for e in by_key["levels"].entries} == {
        level: levels[level] for level in ("excellent", "good", "fair", "poor")
    }
    assert len(levels) >= 3


def test_a_tile_link_is_a_bookmarkable_filter_of_its_list(
    security_admin: Any, reader: Any, client: Client, clock: Any
) -> None:
    _fleet(3, security_admin, clock.now())
    client.force_login(reader)
    page = client.get("/backup-center/tiles/").content.decode()
    for link in ["/jobs/?status=failed&amp;since=24h", "/items/?rpo=missed",
                 "/alerts/?status=open&amp;severity=critical",
                 "/backup-center/?immutability=locked", "/backup-center/?soft_delete=always_on",
                 "/backup-center/?mua=true", "/backup-center/?security_level=poor",
                 "/approvals/?status=pending"]:  # fmt: skip
        assert f'href="{link}"' in page, link
    # The jobs list keeps the relative window in its URL: the same link tomorrow shows
    # tomorrow's last 24 hours.
    clock.advance(timedelta(hours=48))
    assert _list_count(client, "/jobs/?since=24h") == 0
    assert _list_count(client, "/jobs/?since=7d") == 3 * 4 * 4 + 1


@pytest.mark.parametrize(
    "path",
    ["/backup-center/tiles/", "/backup-center/", "/backup-center/?sort=-storage",
     "/backup-center/?sort=-items&mua=true", "/backup-center/?sort=last_backup",
     "/backup-center/?security_level=good&sort=security_level"],
)  # fmt: skip
def test_query_count_is_the_same_at_3_and_30_vaults(
    security_admin: Any, reader: Any, client: Client, clock: Any, path: str
) -> None:
    client.force_login(reader)
    _fleet(3, security_admin, clock.now(), prefix="a")
    client.get(path)  # warm the per-process caches
    with CaptureQueriesContext(connection) as small:
        assert client.get(path).status_code == 200
    _fleet(30, security_admin, clock.now(), prefix="b")
    with CaptureQueriesContext(connection) as large:
        assert client.get(path).status_code == 200
    assert len(small) == len(large)


def test_the_tiles_are_five_aggregate_queries(security_admin: Any, reader: Any, clock: Any) -> None:
    from portal.center.tiles import center_tiles

    _fleet(3, security_admin, clock.now())
    with CaptureQueriesContext(connection) as queries:
        center_tiles(reader, clock.now())
    assert len(queries) == 5


def test_a_reader_sees_the_tiles_and_no_action(
    security_admin: Any, reader: Any, client: Client, clock: Any
) -> None:
    _fleet(3, security_admin, clock.now())
    client.force_login(reader)
    fragment = client.get("/backup-center/tiles/", headers={"HX-Request": "true"})
    body = fragment.content.decode()
    assert "<html" not in body and 'id="tiles"' in body and "Pending approvals" in body
    assert "<form" not in body and "<button" not in body
    for verb in ("hx-post", "hx-put", "hx-patch", "hx-delete"):
        assert verb not in body
    page = client.get("/backup-center/tiles/").content.decode()  # without JavaScript: a page
    assert "<h1>Backup center summary</h1>" in page and page.count('method="post"') == 1
    portfolio = client.get("/backup-center/").content.decode()
    assert 'hx-get="/backup-center/tiles/"' in portfolio  # loaded after the table
    assert 'href="/backup-center/tiles/"' in portfolio  # and reachable without JavaScript


def test_a_person_without_a_role_gets_no_tiles(db: None, client: Client) -> None:
    from tests.conftest import make_user

    nobody = make_user("nobody", "reader")
    nobody.groups.clear()
    client.force_login(nobody)
    assert client.get("/backup-center/tiles/").status_code == 403


# --- the vault storage totals (database triggers) ------------------------------------------


def _totals(vault: Vault) -> tuple[int, int, int]:
    vault.refresh_from_db()
    return vault.stored_snapshot_bytes, vault.stored_standard_bytes, vault.stored_archive_bytes


def _sums(vault: Vault) -> tuple[int, int, int]:
    groups = {"snapshot": ["snapshot"], "standard": ["snapshot_and_vault", "vault_standard"],
              "archive": ["vault_archive"]}  # fmt: skip
    points = RecoveryPoint.objects.filter(vault=vault)
    return tuple(  # type: ignore[return-value]
        sum(p.stored_bytes for p in points if p.tier in tiers) for tiers in groups.values()
    )


def test_storage_totals_follow_every_write_of_a_point(security_admin: Any, clock: Any) -> None:
    now = clock.now()
    one, two = Vault.objects.bulk_create(
        Vault(name=name, kind="backup", region="r") for name in ("tot-a", "tot-b")
    )
    for vault in (one, two):
        policy = Policy.objects.create(vault=vault, name="daily")
        item = ProtectedItem.objects.create(vault=vault, name="i", source_path="/s", policy=policy)
        RecoveryPoint.objects.bulk_create(
            RecoveryPoint(vault=vault, item=item, tier=tier, created_at=now, stored_bytes=size,
                          expires_at=now + timedelta(days=1))
            for tier, size in [("snapshot", 10), ("snapshot_and_vault", 200),
                               ("vault_standard", 3000), ("vault_archive", 40000)]
        )  # fmt: skip
    assert _totals(one) == _sums(one) == (10, 3200, 40000)
    # A tier move, a size change, a verification (no change), a delete: one statement each.
    RecoveryPoint.objects.filter(vault=one, tier="vault_standard").update(tier="vault_archive")
    RecoveryPoint.objects.filter(vault=one, tier="snapshot").update(stored_bytes=15)
    RecoveryPoint.objects.filter(vault=one).update(verified_at=now)
    RecoveryPoint.objects.filter(vault=one, tier="snapshot_and_vault").delete()
    assert _totals(one) == _sums(one) == (15, 0, 43000)
    assert _totals(two) == _sums(two) == (10, 3200, 40000)  # the other vault is untouched
    RecoveryPoint.objects.filter(vault=two).delete()
    assert _totals(two) == (0, 0, 0)


def test_item_counts_follow_items_added_and_removed(db: None) -> None:
    vault = Vault.objects.create(name="count-me", kind="backup", region="r")
    policy = Policy.objects.create(vault=vault, name="daily")
    ProtectedItem.objects.bulk_create(
        ProtectedItem(vault=vault, name=f"i{n}", source_path="/s", policy=policy) for n in range(5)
    )
    ProtectedItem.objects.create(vault=vault, name="one-more", source_path="/s", policy=policy)
    vault.refresh_from_db()
    assert vault.stored_item_count == 6
    ProtectedItem.objects.filter(vault=vault, name__in=["i0", "i1"]).delete()
    ProtectedItem.objects.filter(vault=vault).update(protection_state="protection_stopped")
    vault.refresh_from_db()
    assert vault.stored_item_count == 4 == vault.items.count()


def test_the_jobs_since_filter_on_the_api_and_bad_values(
    security_admin: Any, reader: Any, api: Any, client: Client, clock: Any
) -> None:
    _fleet(3, security_admin, clock.now())
    body = api(reader).get("/api/v1/jobs/?since=24h&status=failed").json()
    assert body["count"] == 3 * 4  # one failed backup per item, all within the day
    refused = api(reader).get("/api/v1/jobs/?since=forever")
    assert refused.status_code == 400
    client.force_login(reader)
    page = client.get("/jobs/?since=forever")
    assert page.status_code == 200
    assert page.context["filter"].errors["since"]  # the jobs page's form knows it is wrong


def test_a_full_save_of_a_stale_vault_keeps_the_totals(db: None, clock: Any) -> None:
    vault = Vault.objects.create(name="stale", kind="backup", region="r")
    stale = Vault.objects.get(pk=vault.pk)  # read before the backup below
    policy = Policy.objects.create(vault=vault, name="daily")
    item = ProtectedItem.objects.create(vault=vault, name="i", source_path="/s", policy=policy)
    RecoveryPoint.objects.create(
        vault=vault, item=item, tier="vault_standard", created_at=clock.now(),
        expires_at=clock.now() + timedelta(days=1), stored_bytes=777,
    )  # fmt: skip
    stale.region = "elsewhere"
    stale.save()
    vault.refresh_from_db()
    assert (vault.region, vault.stored_standard_bytes, vault.stored_item_count) == (
        "elsewhere", 777, 1,
    )  # fmt: skip


def test_portfolio_rows_escape_tags_and_guard_names(
    security_admin: Any, reader: Any, client: Client
) -> None:
    """Rows are built in Python (portal/center/rows.py): every free-text value is escaped."""
    guard = ResourceGuard.objects.create(name='g"><script>alert(1)</script>', owner=security_admin)
    Vault.objects.create(
        name="escaped", kind="backup", region="westeurope", resource_guard=guard,
        tags={"<img src=x onerror=alert(1)>": "\"'&"},
    )  # fmt: skip
    client.force_login(reader)
    page = client.get("/backup-center/?search=escaped").content.decode()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "g&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;=&quot;&#x27;&amp;" in page
    assert 'href="/vaults/escaped/"' in page and 'href="/items/?vault=escaped"' in page
