"""The Backup policies and Backup items blades: forms, the effect preview, refusals in place."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from policies import services as policy_services
from policies.models import Policy
from portal import clock
from portal.models import AuditRecord
from tests.factories import make_vault
from vaults import services as vault_services
from vaults.models import ProtectedItem, RecoveryPoint, Vault

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def make_policy(actor: Any, vault: Vault, name: str = "daily", **fields: Any) -> Policy:
    return policy_services.policy_create(actor=actor, vault=vault, name=name, **fields)


def form_data(policy: Policy, **changes: Any) -> dict[str, Any]:
    """The edit form as a browser would post it, with ``changes`` applied."""
    data: dict[str, Any] = {}
    for name in policy_services.POLICY_FIELDS:
        value = changes.get(name, getattr(policy, name))
        if hasattr(value, "strftime"):
            value = value.strftime("%H:%M")
        data[name] = "" if value is None else value
    return data


@pytest.fixture
def world(admin: Any, clock: Any, tmp_path: Path) -> dict[str, Any]:
    """A plain vault with two policies and an item with two scheduled points."""
    vault = make_vault(admin, name="plain")
    short = make_policy(admin, vault, "daily-30", daily_days=30)
    long = make_policy(admin, vault, "daily-90", daily_days=90)
    item = vault_services.item_protect(
        actor=admin, vault=vault, name="docs", source_path=str(tmp_path), policy=short
    )
    for days_ago in (3, 2):
        vault_services.point_record(
            item=item, created_at=clock.now() - timedelta(days=days_ago), logical_bytes=2048
        )
    return {"vault": vault, "short": short, "long": long, "item": item}


@pytest.fixture
def sealed(admin: Any, clock: Any, tmp_path: Path) -> dict[str, Any]:
    """An immutable Recovery Services vault: retention only grows, points live to expiry."""
    vault = make_vault(admin, name="sealed", immutability="enabled")
    short = make_policy(admin, vault, "daily-30", daily_days=30)
    long = make_policy(admin, vault, "daily-90", daily_days=90)
    item = vault_services.item_protect(
        actor=admin, vault=vault, name="ledger", source_path=str(tmp_path), policy=long
    )
    point = vault_services.point_record(item=item, created_at=clock.now() - timedelta(days=1))
    return {"vault": vault, "short": short, "long": long, "item": item, "point": point}


def state() -> tuple[list[dict[str, Any]], ...]:
    return (
        list(Policy.objects.order_by("pk").values()),
        list(ProtectedItem.objects.order_by("pk").values()),
        list(RecoveryPoint.objects.order_by("pk").values()),
    )


# --- policies -------------------------------------------------------------------------------


def test_admin_creates_a_policy_from_the_page(admin: Any, client: Client, vault: Vault) -> None:
    client.force_login(admin)
    page = client.get(f"/vaults/{vault.name}/policies/new/").content.decode()
    assert 'for="id_daily_days"' in page and "Create policy" in page
    data = form_data(
        Policy(vault=vault),
        name="weekly-london",
        frequency="weekly",
        weekdays=["monday", "thursday"],
        timezone="Europe/London",
        weekly_weeks=12,
        monthly_months=6,
    )
    response = client.post(f"/vaults/{vault.name}/policies/new/", data)
    assert response.status_code == 302
    policy = Policy.objects.get(vault=vault, name="weekly-london")
    assert policy.weekdays == ["monday", "thursday"] and policy.weekly_weeks == 12
    assert AuditRecord.objects.filter(operation="policy_create", source="web").count() == 1
    listing = client.get(f"/vaults/{vault.name}/policies/").content.decode()
    for text in ["weekly-london", "Weekly on Monday, Thursday at 22:00", "(Europe/London)"]:
        assert text in listing
    assert "12 weeks (Sunday)" in listing and "6 months (day 1)" in listing


def test_a_range_error_from_the_service_lands_on_its_field(
    admin: Any, client: Client, vault: Vault
) -> None:
    client.force_login(admin)
    data = form_data(Policy(vault=vault), name="too-short", daily_days=3)
    response = client.post(f"/vaults/{vault.name}/policies/new/", data)
    assert response.status_code == 400
    page = response.content.decode()
    field = page[page.index('id="id_daily_days"') :]
    assert "Keep daily points for 7 to 9999 days." in field[:600]
    assert "retention.daily_days:" not in page
    assert not Policy.objects.filter(name="too-short").exists()


def test_a_type_error_is_caught_by_the_form(admin: Any, client: Client, vault: Vault) -> None:
    client.force_login(admin)
    data = form_data(Policy(vault=vault), name="typo", daily_days="thirty", time="25:99")
    response = client.post(f"/vaults/{vault.name}/policies/new/", data)
    assert response.status_code == 200
    assert "Enter a whole number." in response.content.decode()
    assert not Policy.objects.filter(name="typo").exists()


def test_policies_blade_lists_kind_tiering_and_item_count(
    admin: Any, client: Client, world: dict[str, Any]
) -> None:
    make_policy(
        admin,
        world["vault"],
        "hourly",
        kind="enhanced",
        frequency="hourly",
        interval_hours=6,
        timezone="Asia/Tokyo",
        tiering_mode="after",
        tiering_after_days=120,
    )
    client.force_login(admin)
    page = client.get("/vaults/plain/policies/").content.decode()
    assert "Every 6 hours from 08:00 for 24 hours" in page and "(Asia/Tokyo)" in page
    assert "To archive after 120 days" in page and "Enhanced" in page
    row = page[page.index(f'id="policy-{world["short"].pk}"') :]
    assert "<td>1</td>" in row[: row.index("</tr>")]


def test_edit_page_previews_moves_and_weaker_before_saving(
    admin: Any, client: Client, world: dict[str, Any]
) -> None:
    policy = world["short"]
    client.force_login(admin)
    url = f"/vaults/plain/policies/{policy.pk}/"
    assert "Change a field, or press Preview" in client.get(url).content.decode()
    response = client.post(url, {**form_data(policy, daily_days=20), "action": "preview"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Daily retention would drop from 30 to 20 days." in page
    assert "Weaker" in page and "Allowed" in page and "Will be refused" not in page
    assert page.count("10 days earlier") == 2
    policy.refresh_from_db()
    assert policy.daily_days == 30


def test_htmx_preview_renders_only_the_preview_region(
    admin: Any, client: Client, world: dict[str, Any]
) -> None:
    policy = world["short"]
    client.force_login(admin)
    response = client.post(
        f"/vaults/plain/policies/{policy.pk}/preview/",
        form_data(policy, daily_days=45),
        headers=HTMX,
    )
    body = response.content.decode().strip()
    assert body.startswith('<section id="policy-preview"')
    assert "<html" not in body
    assert "Not weaker" in body and "Retention grows" in body
    assert body.count("15 days later") == 2


def test_htmx_preview_lists_form_errors(admin: Any, client: Client, world: dict[str, Any]) -> None:
    policy = world["short"]
    client.force_login(admin)
    response = client.post(
        f"/vaults/plain/policies/{policy.pk}/preview/",
        form_data(policy, weekly_weeks=9000),
        headers=HTMX,
    )
    assert "Keep weekly points for 1 to 5163 weeks." in response.content.decode()


def test_saving_longer_retention_moves_existing_expiries(
    admin: Any, client: Client, world: dict[str, Any]
) -> None:
    policy = world["short"]
    before = {p.pk: p.expires_at for p in RecoveryPoint.objects.all()}
    client.force_login(admin)
    response = client.post(
        f"/vaults/plain/policies/{policy.pk}/",
        {**form_data(policy, daily_days=60), "action": "save"},
    )
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.daily_days == 60
    for point in RecoveryPoint.objects.all():
        assert point.expires_at == before[point.pk] + timedelta(days=30)


def test_immutable_vault_preview_says_it_will_refuse_and_saving_is_refused(
    admin: Any, client: Client, sealed: dict[str, Any]
) -> None:
    policy = sealed["long"]
    client.force_login(admin)
    url = f"/vaults/sealed/policies/{policy.pk}/"
    shorter = form_data(policy, daily_days=10)
    preview = client.post(url, {**shorter, "action": "preview"}).content.decode()
    assert "Will be refused" in preview
    assert "This vault is immutable: retention can only grow." in preview
    response = client.post(url, {**shorter, "action": "save"})
    assert response.status_code == 409
    page = response.content.decode()
    assert "Refused, nothing was saved" in page and "retention can only grow" in page
    policy.refresh_from_db()
    sealed["point"].refresh_from_db()
    assert policy.daily_days == 90
    assert sealed["point"].expires_at == sealed["point"].created_at + timedelta(days=90)
    assert AuditRecord.objects.filter(operation="policy_update", code="immutable_vault").exists()


def test_delete_policy_is_refused_while_items_use_it(
    admin: Any, client: Client, world: dict[str, Any]
) -> None:
    client.force_login(admin)
    used, unused = world["short"], world["long"]
    response = client.post(f"/vaults/plain/policies/{used.pk}/delete/", headers=HTMX)
    assert response.status_code == 409
    body = response.content.decode().strip()
    assert body.startswith('<div id="policies-blade">')
    assert "Refused to delete daily-30" in body and "use this policy" in body
    assert Policy.objects.filter(pk=used.pk).exists()
    response = client.post(f"/vaults/plain/policies/{unused.pk}/delete/")
    assert response.status_code == 302
    assert not Policy.objects.filter(pk=unused.pk).exists()


# --- items ----------------------------------------------------------------------------------


def test_items_blade_lists_items_with_state_policy_and_points(
    admin: Any, client: Client, world: dict[str, Any]
) -> None:
    client.force_login(admin)
    page = client.get("/vaults/plain/items/").content.decode()
    for text in ["docs", str(world["item"].source_path), "daily-30", "Protected", "<td>2</td>"]:
        assert text in page
    assert "Protect an item" in page


def test_admin_protects_a_directory_from_the_page(
    admin: Any, client: Client, world: dict[str, Any], tmp_path: Path
) -> None:
    client.force_login(admin)
    relative = client.post(
        "/vaults/plain/items/new/",
        {"name": "rel", "source_path": "data/here", "policy": world["short"].pk},
    )
    assert relative.status_code == 400
    assert "give an absolute path" in relative.content.decode()
    source = tmp_path / "photos"
    source.mkdir()
    response = client.post(
        "/vaults/plain/items/new/",
        {"name": "photos", "source_path": str(source), "policy": world["long"].pk},
    )
    item = ProtectedItem.objects.get(name="photos")
    assert response.status_code == 302
    assert response["Location"] == f"/vaults/plain/items/{item.pk}/"
    assert item.policy == world["long"] and item.source_path == str(source)


def test_item_page_shows_points_and_actions(
    admin: Any, client: Client, world: dict[str, Any]
) -> None:
    client.force_login(admin)
    page = client.get(f"/vaults/plain/items/{world['item'].pk}/").content.decode()
    for text in [
        "Vault-standard",
        "2.0\xa0KB",
        "(0\xa0bytes stored)",
        "daily",
        "Change policy",
        "Retain until",
    ]:
        assert text in page
    assert "Stop protection, retain data" in page and "Type <strong>docs</strong>" in page


def test_change_item_policy_with_preview_then_save(
    admin: Any, client: Client, world: dict[str, Any]
) -> None:
    item, long = world["item"], world["long"]
    client.force_login(admin)
    url = f"/vaults/plain/items/{item.pk}/policy/"
    preview = client.post(f"{url}preview/", {"policy": long.pk}, headers=HTMX).content.decode()
    assert preview.strip().startswith('<section id="change-preview"')
    assert preview.count("60 days later") == 2 and "Not weaker" in preview
    item.refresh_from_db()
    assert item.policy == world["short"]
    response = client.post(url, {"policy": long.pk, "action": "save"})
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.policy == long


def test_moving_an_item_to_shorter_retention_is_refused_on_an_immutable_vault(
    admin: Any, client: Client, sealed: dict[str, Any]
) -> None:
    item = sealed["item"]
    client.force_login(admin)
    url = f"/vaults/sealed/items/{item.pk}/policy/"
    preview = client.post(url, {"policy": sealed["short"].pk, "action": "preview"})
    assert "Will be refused" in preview.content.decode()
    response = client.post(url, {"policy": sealed["short"].pk, "action": "save"})
    assert response.status_code == 409
    assert "Refused, nothing was changed" in response.content.decode()
    item.refresh_from_db()
    assert item.policy == sealed["long"]


def test_stop_retain_then_resume(admin: Any, client: Client, world: dict[str, Any]) -> None:
    item = world["item"]
    client.force_login(admin)
    assert client.post(f"/vaults/plain/items/{item.pk}/stop/").status_code == 302
    item.refresh_from_db()
    assert item.protection_state == "protection_stopped"
    page = client.get(f"/vaults/plain/items/{item.pk}/").content.decode()
    assert "Protection stopped" in page and "Resume protection" in page
    assert client.post(f"/vaults/plain/items/{item.pk}/resume/").status_code == 302
    item.refresh_from_db()
    assert item.protection_state == "protected"


def test_stop_with_delete_data_needs_the_items_name_typed(
    admin: Any, client: Client, world: dict[str, Any]
) -> None:
    item = world["item"]
    client.force_login(admin)
    url = f"/vaults/plain/items/{item.pk}/stop/"
    wrong = client.post(url, {"delete_data": "on", "confirmation": "doc"})
    assert wrong.status_code == 400
    assert "Type the item&#x27;s exact name (docs)" in wrong.content.decode()
    item.refresh_from_db()
    assert item.protection_state == "protected"
    response = client.post(url, {"delete_data": "on", "confirmation": "docs"})
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.protection_state == "soft_deleted" and item.purge_at is not None
    assert "Soft-deleted" in client.get("/vaults/plain/items/").content.decode()


def test_stop_with_delete_data_is_refused_in_place_on_an_immutable_vault(
    admin: Any, client: Client, sealed: dict[str, Any]
) -> None:
    item = sealed["item"]
    client.force_login(admin)
    response = client.post(
        f"/vaults/sealed/items/{item.pk}/stop/", {"delete_data": "on", "confirmation": "ledger"}
    )
    assert response.status_code == 409
    page = response.content.decode()
    assert 'id="protection-refusal"' in page and "stop protection and retain the data" in page
    item.refresh_from_db()
    assert item.protection_state == "protected"


def test_point_delete_is_refused_in_its_row_on_an_immutable_vault(
    admin: Any, client: Client, sealed: dict[str, Any]
) -> None:
    item, point = sealed["item"], sealed["point"]
    client.force_login(admin)
    response = client.post(
        f"/vaults/sealed/items/{item.pk}/points/{point.pk}/delete/", headers=HTMX
    )
    assert response.status_code == 409
    body = response.content.decode().strip()
    assert body.startswith('<section id="item-points"')
    row = body[body.index(f'id="point-{point.pk}"') :]
    assert "cannot be deleted before then" in row[: row.index('id="point-refusal"') + 400]
    assert RecoveryPoint.objects.filter(pk=point.pk).exists()


def test_retain_until_can_grow_but_not_shrink_on_an_immutable_vault(
    admin: Any, client: Client, sealed: dict[str, Any]
) -> None:
    item, point = sealed["item"], sealed["point"]
    client.force_login(admin)
    url = f"/vaults/sealed/items/{item.pk}/points/{point.pk}/retain/"
    earlier = (point.expires_at - timedelta(days=5)).strftime("%Y-%m-%dT%H:%M")
    refused = client.post(url, {"retain_until": earlier}, headers=HTMX)
    assert refused.status_code == 409
    assert "can only grow" in refused.content.decode()
    later = (point.expires_at + timedelta(days=5)).strftime("%Y-%m-%dT%H:%M")
    allowed = client.post(url, {"retain_until": later}, headers=HTMX)
    assert allowed.status_code == 200
    assert "is now kept until" in allowed.content.decode()
    point.refresh_from_db()
    assert point.expires_at.strftime("%Y-%m-%dT%H:%M") == later


def test_point_delete_on_a_plain_vault(admin: Any, client: Client, world: dict[str, Any]) -> None:
    item = world["item"]
    point = item.recovery_points.first()
    client.force_login(admin)
    response = client.post(f"/vaults/plain/items/{item.pk}/points/{point.pk}/delete/")
    assert response.status_code == 302
    # Soft delete is on (new vaults start so): the point stays, restorable, then is purged.
    point.refresh_from_db()
    assert point.state(clock.now()) == "soft_deleted"
    page = client.get(f"/vaults/plain/items/{item.pk}/").content.decode()
    assert "soft-deleted: restorable until" in page
    assert "Soft-deleted until" in page


# --- readers --------------------------------------------------------------------------------

ACTIONS = [
    "Create policy",
    "Protect an item",
    'value="save"',
    "Delete",
    "Stop protection",
    "Resume protection",
    "Retain until",
    "Change policy</button>",
]


def test_reader_sees_no_action_controls(reader: Any, world: dict[str, Any]) -> None:
    client = Client()
    client.force_login(reader)
    item, policy = world["item"], world["short"]
    for path in [
        "/vaults/plain/policies/",
        f"/vaults/plain/policies/{policy.pk}/",
        "/vaults/plain/items/",
        f"/vaults/plain/items/{item.pk}/",
    ]:
        response = client.get(path)
        assert response.status_code == 200, path
        page = response.content.decode()
        assert not [action for action in ACTIONS if action in page], path
    assert "daily-30" in client.get("/vaults/plain/policies/").content.decode()


def _reader_posts(world: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    item, short, long = world["item"], world["short"], world["long"]
    point = item.recovery_points.first()
    later = "2030-01-01T00:00"
    return [
        ("/vaults/plain/policies/new/", form_data(short, name="mine")),
        (
            f"/vaults/plain/policies/{short.pk}/",
            {**form_data(short, daily_days=9), "action": "save"},
        ),
        (f"/vaults/plain/policies/{long.pk}/delete/", {}),
        ("/vaults/plain/items/new/", {"name": "x", "source_path": "/tmp", "policy": short.pk}),
        (f"/vaults/plain/items/{item.pk}/policy/", {"policy": long.pk, "action": "save"}),
        (f"/vaults/plain/items/{item.pk}/stop/", {}),
        (f"/vaults/plain/items/{item.pk}/stop/", {"delete_data": "on", "confirmation": "docs"}),
        (f"/vaults/plain/items/{item.pk}/resume/", {}),
        (f"/vaults/plain/items/{item.pk}/points/{point.pk}/delete/", {}),
        (f"/vaults/plain/items/{item.pk}/points/{point.pk}/retain/", {"retain_until": later}),
    ]


def test_every_post_by_a_reader_changes_nothing(reader: Any, world: dict[str, Any]) -> None:
    client = Client()
    client.force_login(reader)
    before = state()
    for path, data in _reader_posts(world):
        response = client.post(path, data)
        assert response.status_code in {400, 403, 409}, (path, response.status_code)
        assert state() == before, path
    refused = AuditRecord.objects.filter(actor=reader, code="permission_denied").count()
    assert refused == len(_reader_posts(world))


def test_reader_preview_says_the_role_refuses(reader: Any, world: dict[str, Any]) -> None:
    client = Client()
    client.force_login(reader)
    policy = world["short"]
    response = client.post(
        f"/vaults/plain/policies/{policy.pk}/preview/", form_data(policy), headers=HTMX
    )
    assert "Your role does not allow" in response.content.decode()
    assert state()[0][0]["daily_days"] == 30
