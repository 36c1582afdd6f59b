"""The API contract of SPEC section 5 for policies, protected items and recovery points."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from policies import services as policy_services
from policies.models import Policy
from portal.models import AuditRecord
from tests.conftest import make_user
from tests.factories import make_vault
from vaults import services as vault_services
from vaults.models import ProtectedItem, RecoveryPoint, Vault

pytestmark = pytest.mark.django_db

V = "/api/v1/vaults"


def full_policy(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "daily-30",
        "kind": "standard",
        "schedule": {
            "frequency": "daily",
            "time": "22:30",
            "weekdays": [],
            "timezone": "Europe/London",
        },
        "instant_restore_days": 2,
        "retention": {
            "daily_days": 30,
            "weekly_weeks": 12,
            "weekly_weekday": "sunday",
            "monthly_months": 24,
            "monthly_day": 1,
            "yearly_years": None,
            "yearly_month": 1,
        },
        "tiering": {"mode": "off", "after_days": None},
    }
    body.update(overrides)
    return body


def make_policy(actor: Any, vault: Vault, name: str = "daily-30", **fields: Any) -> Policy:
    """A daily-only policy (weekly, monthly and yearly tiers off) unless told otherwise."""
    fields.setdefault("daily_days", 30)
    return policy_services.policy_create(actor=actor, vault=vault, name=name, **fields)


def make_item(actor: Any, vault: Vault, policy: Policy, tmp_path: Path, name: str = "docs") -> Any:
    source = tmp_path / name
    source.mkdir(exist_ok=True)
    return vault_services.item_protect(
        actor=actor, vault=vault, name=name, source_path=str(source), policy=policy
    )


def make_points(item: Any, clock: Any, days_ago: tuple[int, ...] = (3, 2, 1)) -> list[Any]:
    return [
        vault_services.point_record(item=item, created_at=clock.now() - timedelta(days=days))
        for days in days_ago
    ]


def assert_error(response: Any, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert body["detail"]
    if field is not None:
        assert body["field"] == field, body


@pytest.fixture
def policy(admin: Any, vault: Vault) -> Policy:
    return make_policy(admin, vault)


@pytest.fixture
def item(admin: Any, vault: Vault, policy: Policy, tmp_path: Path) -> Any:
    return make_item(admin, vault, policy, tmp_path)


# --- policies: create, read, list -----------------------------------------------------------


def test_create_policy_answers_201_with_the_nested_shape(
    admin: Any, api: Any, vault: Vault
) -> None:
    response = api(admin).post(f"{V}/vault-one/policies/", full_policy(), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "daily-30"
    assert body["kind"] == "standard"
    assert body["schedule"] == {
        "frequency": "daily",
        "interval_hours": None,
        "window_start": None,
        "window_hours": None,
        "time": "22:30",
        "weekdays": [],
        "timezone": "Europe/London",
    }
    assert body["instant_restore_days"] == 2
    assert body["retention"] == full_policy()["retention"]
    assert body["tiering"] == {"mode": "off", "after_days": None}
    assert body["items"] == 0
    assert isinstance(body["id"], int)
    saved = Policy.objects.get(vault=vault, name="daily-30")
    assert (saved.daily_days, saved.weekly_weeks, saved.monthly_months) == (30, 12, 24)
    assert saved.yearly_years is None
    assert saved.time.strftime("%H:%M") == "22:30"
    assert AuditRecord.objects.filter(operation="policy_create", outcome="allowed").exists()


def test_create_enhanced_hourly_policy(admin: Any, api: Any, vault: Vault) -> None:
    body = full_policy(
        name="hourly",
        kind="enhanced",
        schedule={
            "frequency": "hourly",
            "interval_hours": 6,
            "window_start": "08:00",
            "window_hours": 12,
            "timezone": "America/New_York",
        },
        instant_restore_days=7,
    )
    response = api(admin).post(f"{V}/vault-one/policies/", body, format="json")
    assert response.status_code == 201, response.json()
    schedule = response.json()["schedule"]
    assert schedule["interval_hours"] == 6
    assert schedule["window_start"] == "08:00"
    assert schedule["window_hours"] == 12
    assert schedule["frequency"] == "hourly"


def test_create_weekly_policy_accepts_capitalised_weekday_names(
    admin: Any, api: Any, vault: Vault
) -> None:
    body = full_policy(
        name="weekly",
        schedule={"frequency": "weekly", "time": "01:00", "weekdays": ["Saturday", "sunday"]},
    )
    response = api(admin).post(f"{V}/vault-one/policies/", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["schedule"]["weekdays"] == ["saturday", "sunday"]


def test_create_policy_with_only_a_name_takes_the_defaults(
    admin: Any, api: Any, vault: Vault
) -> None:
    response = api(admin).post(f"{V}/vault-one/policies/", {"name": "plain"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["kind"] == "standard"
    assert body["schedule"]["frequency"] == "daily"
    assert body["schedule"]["time"] == "22:00"
    assert body["retention"]["daily_days"] == 30
    assert body["retention"]["weekly_weeks"] is None


def test_list_policies_is_paginated_with_item_counts(
    admin: Any, api: Any, vault: Vault, item: Any
) -> None:
    make_policy(admin, vault, name="another")
    response = api(admin).get(f"{V}/vault-one/policies/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2
    assert [(p["name"], p["items"]) for p in body["results"]] == [
        ("another", 0),
        ("daily-30", 1),
    ]


def test_policies_are_scoped_to_their_vault(admin: Any, api: Any, policy: Policy) -> None:
    make_vault(admin, name="vault-two")
    assert api(admin).get(f"{V}/vault-two/policies/").json()["count"] == 0
    assert_error(api(admin).get(f"{V}/vault-two/policies/daily-30/"), 404, "not_found")


def test_get_policy_by_name(admin: Any, api: Any, policy: Policy) -> None:
    response = api(admin).get(f"{V}/vault-one/policies/daily-30/")
    assert response.status_code == 200
    assert response.json()["id"] == policy.pk
    assert response.json()["retention"]["daily_days"] == 30


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/vaults/nope/policies/",
        "/api/v1/vaults/vault-one/policies/nope/",
        "/api/v1/vaults/nope/items/",
        "/api/v1/vaults/vault-one/items/nope/",
        "/api/v1/vaults/vault-one/items/nope/recovery-points/",
        "/api/v1/vaults/vault-one/items/docs/recovery-points/999999/",
    ],
)
def test_unknown_vault_policy_item_or_point_is_404(
    admin: Any, api: Any, item: Any, url: str
) -> None:
    assert_error(api(admin).get(url), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("patch", "/api/v1/vaults/vault-one/policies/nope/"),
        ("delete", "/api/v1/vaults/vault-one/policies/nope/"),
        ("patch", "/api/v1/vaults/vault-one/items/nope/"),
        ("post", "/api/v1/vaults/vault-one/items/nope/stop-protection/"),
        ("post", "/api/v1/vaults/vault-one/items/nope/resume/"),
        ("patch", "/api/v1/vaults/vault-one/items/docs/recovery-points/999999/"),
        ("delete", "/api/v1/vaults/vault-one/items/docs/recovery-points/999999/"),
        ("post", "/api/v1/vaults/nope/policies/"),
        ("post", "/api/v1/vaults/nope/items/"),
    ],
)
def test_writes_to_unknown_objects_are_404(
    admin: Any, api: Any, item: Any, method: str, url: str
) -> None:
    response = getattr(api(admin), method)(url, {}, format="json")
    assert_error(response, 404, "not_found")


def test_a_point_of_another_item_is_404(
    admin: Any, api: Any, vault: Vault, policy: Policy, item: Any, clock: Any, tmp_path: Path
) -> None:
    other = make_item(admin, vault, policy, tmp_path, name="other")
    (point,) = make_points(other, clock, (1,))
    url = f"{V}/vault-one/items/docs/recovery-points/{point.pk}/"
    assert_error(api(admin).get(url), 404, "not_found")
    assert_error(api(admin).delete(url), 404, "not_found")
    assert RecoveryPoint.objects.filter(pk=point.pk).exists()


def test_duplicate_policy_name_is_400_naming_the_field(
    admin: Any, api: Any, policy: Policy
) -> None:
    response = api(admin).post(f"{V}/vault-one/policies/", full_policy(), format="json")
    assert_error(response, 400, "validation_error", "name")
    assert Policy.objects.count() == 1


# --- policies: bad input --------------------------------------------------------------------

BAD_POLICY_FIELDS = [
    # out-of-range retention, each tier, both ends (SPEC 3.6), from the rules
    ({"retention": {"daily_days": 6}}, "retention.daily_days"),
    ({"retention": {"daily_days": 10000}}, "retention.daily_days"),
    ({"retention": {"daily_days": None}}, "retention.daily_days"),
    ({"retention": {"weekly_weeks": 0}}, "retention.weekly_weeks"),
    ({"retention": {"weekly_weeks": 5164}}, "retention.weekly_weeks"),
    ({"retention": {"monthly_months": 0}}, "retention.monthly_months"),
    ({"retention": {"monthly_months": 1189}}, "retention.monthly_months"),
    ({"retention": {"yearly_years": 0}}, "retention.yearly_years"),
    ({"retention": {"yearly_years": 100}}, "retention.yearly_years"),
    ({"retention": {"monthly_day": 29}}, "retention.monthly_day"),
    ({"retention": {"yearly_month": 13}}, "retention.yearly_month"),
    ({"schedule": {"timezone": "Mars/Olympus_Mons"}}, "schedule.timezone"),
    ({"instant_restore_days": 6}, "instant_restore_days"),
    ({"tiering": {"mode": "after", "after_days": 30}}, "tiering.after_days"),
    ({"schedule": {"frequency": "hourly"}}, "schedule.frequency"),
    # types and formats, from the serializer
    ({"schedule": {"time": "25:00"}}, "schedule.time"),
    ({"schedule": {"time": "10pm"}}, "schedule.time"),
    ({"schedule": {"window_start": "8h"}}, "schedule.window_start"),
    ({"schedule": {"weekdays": ["funday"]}}, "schedule.weekdays"),
    ({"schedule": {"frequency": "monthly"}}, "schedule.frequency"),
    ({"retention": {"weekly_weekday": "funday"}}, "retention.weekly_weekday"),
    ({"retention": {"daily_days": "lots"}}, "retention.daily_days"),
    ({"retention": {"daily_days": -1}}, "retention.daily_days"),
    ({"tiering": {"mode": "sometimes"}}, "tiering.mode"),
    ({"kind": "premium"}, "kind"),
]

BAD_ENHANCED_FIELDS = [
    ({"interval_hours": 5}, "schedule.interval_hours"),
    ({"window_hours": 2}, "schedule.window_hours"),
    ({"window_hours": 25}, "schedule.window_hours"),
]


def _merge(body: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    merged = dict(body)
    for key, value in change.items():
        merged[key] = {**body[key], **value} if isinstance(value, dict) else value
    return merged


@pytest.mark.parametrize(("change", "field"), BAD_POLICY_FIELDS)
def test_create_with_bad_input_is_400_naming_the_field_and_saves_nothing(
    admin: Any, api: Any, vault: Vault, change: dict[str, Any], field: str
) -> None:
    response = api(admin).post(
        f"{V}/vault-one/policies/", _merge(full_policy(), change), format="json"
    )
    assert_error(response, 400, "validation_error", field)
    assert field in response.json()["detail"]
    assert not Policy.objects.exists()


def _enhanced_body() -> dict[str, Any]:
    return full_policy(
        name="hourly",
        kind="enhanced",
        schedule={"frequency": "hourly", "interval_hours": 4, "window_hours": 24},
        instant_restore_days=7,
    )


@pytest.mark.parametrize(("schedule", "field"), BAD_ENHANCED_FIELDS)
def test_create_enhanced_with_bad_interval_or_window_is_400(
    admin: Any, api: Any, vault: Vault, schedule: dict[str, Any], field: str
) -> None:
    body = _merge(_enhanced_body(), {"schedule": schedule})
    response = api(admin).post(f"{V}/vault-one/policies/", body, format="json")
    assert_error(response, 400, "validation_error", field)
    assert not Policy.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "name"), ({"name": ""}, "name"), ({"name": "a/b"}, "name"), ({"name": "x" * 51}, "name")],
)
def test_create_policy_needs_a_usable_name(
    admin: Any, api: Any, vault: Vault, body: dict[str, Any], field: str
) -> None:
    response = api(admin).post(f"{V}/vault-one/policies/", body, format="json")
    assert_error(response, 400, "validation_error", field)
    assert not Policy.objects.exists()


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize(("change", "field"), BAD_POLICY_FIELDS)
def test_patch_with_bad_input_is_400_and_changes_nothing(
    admin: Any,
    api: Any,
    policy: Policy,
    change: dict[str, Any],
    field: str,
    dry_run: bool,
) -> None:
    before = Policy.objects.get(pk=policy.pk).audit_state()
    url = f"{V}/vault-one/policies/daily-30/" + ("?dry_run=true" if dry_run else "")
    response = api(admin).patch(url, change, format="json")
    assert_error(response, 400, "validation_error", field)
    assert Policy.objects.get(pk=policy.pk).audit_state() == before


@pytest.mark.parametrize(("schedule", "field"), BAD_ENHANCED_FIELDS)
def test_patch_enhanced_with_bad_interval_or_window_is_400(
    admin: Any, api: Any, vault: Vault, schedule: dict[str, Any], field: str
) -> None:
    make_policy(
        admin, vault, name="hourly", kind="enhanced", frequency="hourly", instant_restore_days=7
    )
    response = api(admin).patch(
        f"{V}/vault-one/policies/hourly/", {"schedule": schedule}, format="json"
    )
    assert_error(response, 400, "validation_error", field)
    saved = Policy.objects.get(name="hourly")
    assert (saved.interval_hours, saved.window_hours) == (None, None)


# --- policies: update, dry run, delete ------------------------------------------------------


def test_patch_accepts_partial_nested_json(admin: Any, api: Any, vault: Vault) -> None:
    make_policy(admin, vault, weekly_weeks=12, monthly_months=24, timezone="Europe/Paris")
    response = api(admin).patch(
        f"{V}/vault-one/policies/daily-30/",
        {"retention": {"daily_days": 60}, "schedule": {"time": "03:15"}},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["retention"]["daily_days"] == 60
    assert body["retention"]["weekly_weeks"] == 12
    assert body["retention"]["monthly_months"] == 24
    assert body["schedule"]["time"] == "03:15"
    assert body["schedule"]["timezone"] == "Europe/Paris"
    saved = Policy.objects.get(name="daily-30")
    assert (saved.daily_days, saved.weekly_weeks, saved.monthly_months) == (60, 12, 24)
    assert saved.timezone == "Europe/Paris"


def test_patch_null_turns_a_tier_off(admin: Any, api: Any, vault: Vault) -> None:
    make_policy(admin, vault, weekly_weeks=12)
    response = api(admin).patch(
        f"{V}/vault-one/policies/daily-30/", {"retention": {"weekly_weeks": None}}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["retention"]["weekly_weeks"] is None
    assert Policy.objects.get(name="daily-30").weekly_weeks is None


def test_patch_can_rename_a_policy(admin: Any, api: Any, policy: Policy) -> None:
    response = api(admin).patch(
        f"{V}/vault-one/policies/daily-30/", {"name": "renamed"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert api(admin).get(f"{V}/vault-one/policies/renamed/").status_code == 200


def test_patch_moves_existing_points_expiries_in_a_mutable_vault(
    admin: Any, api: Any, policy: Policy, item: Any, clock: Any
) -> None:
    (point,) = make_points(item, clock, (1,))
    response = api(admin).patch(
        f"{V}/vault-one/policies/daily-30/", {"retention": {"daily_days": 10}}, format="json"
    )
    assert response.status_code == 200, response.json()
    point.refresh_from_db()
    assert point.expires_at < point.created_at + timedelta(days=11)


def test_dry_run_previews_and_changes_nothing(
    admin: Any, api: Any, policy: Policy, item: Any, clock: Any
) -> None:
    points = make_points(item, clock)
    expiries = {p.pk: p.expires_at for p in points}
    before = Policy.objects.get(pk=policy.pk).audit_state()
    audit_count = AuditRecord.objects.count()
    response = api(admin).patch(
        f"{V}/vault-one/policies/daily-30/?dry_run=true",
        {"retention": {"daily_days": 10}},
        format="json",
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["dry_run"] is True
    assert body["allowed"] is True
    assert body["refusal"] is None
    assert body["weaker"] is True
    assert body["weaker_reasons"]
    assert {change["id"] for change in body["point_changes"]} == set(expiries)
    assert all(change["delta_days"] == -20 for change in body["point_changes"])
    assert Policy.objects.get(pk=policy.pk).audit_state() == before
    assert {p.pk: p.expires_at for p in RecoveryPoint.objects.all()} == expiries
    assert AuditRecord.objects.count() == audit_count


@pytest.mark.parametrize(
    ("kind", "refused"), [("recovery_services", True), ("archive", True), ("backup", False)]
)
def test_immutable_vault_and_a_shorter_policy(
    admin: Any, api: Any, clock: Any, tmp_path: Path, kind: str, refused: bool
) -> None:
    """SPEC 3.2: Recovery Services and archive vaults refuse it; Backup vaults allow it."""
    vault = make_vault(admin, name="locked-in", kind=kind, immutability="enabled")
    policy = make_policy(admin, vault)
    (point,) = make_points(make_item(admin, vault, policy, tmp_path), clock, (1,))
    url = f"{V}/locked-in/policies/daily-30/"
    shorter = {"retention": {"daily_days": 10}}

    preview = api(admin).patch(url + "?dry_run=true", shorter, format="json")
    assert preview.status_code == 200, preview.json()
    assert preview.json()["allowed"] is (not refused)
    if refused:
        assert preview.json()["refusal"]["code"] == "immutable_vault"

    response = api(admin).patch(url, shorter, format="json")
    if refused:
        assert_error(response, 409, "immutable_vault")
        assert Policy.objects.get(pk=policy.pk).daily_days == 30
        assert AuditRecord.objects.filter(
            operation="policy_update", outcome="refused", code="immutable_vault"
        ).exists()
    else:
        assert response.status_code == 200, response.json()
        assert Policy.objects.get(pk=policy.pk).daily_days == 10
    # Either way an existing point keeps its expiry: immutability never shortens it.
    assert RecoveryPoint.objects.get(pk=point.pk).expires_at == point.expires_at


def test_immutable_recovery_services_vault_refuses_removing_a_tier(admin: Any, api: Any) -> None:
    vault = make_vault(admin, name="worm", immutability="enabled")
    make_policy(admin, vault, weekly_weeks=12)
    response = api(admin).patch(
        f"{V}/worm/policies/daily-30/", {"retention": {"weekly_weeks": None}}, format="json"
    )
    assert_error(response, 409, "immutable_vault")
    assert Policy.objects.get(name="daily-30").weekly_weeks == 12


def test_immutable_vault_allows_a_longer_policy(admin: Any, api: Any) -> None:
    vault = make_vault(admin, name="worm", immutability="enabled")
    make_policy(admin, vault)
    response = api(admin).patch(
        f"{V}/worm/policies/daily-30/", {"retention": {"daily_days": 90}}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert Policy.objects.get(name="daily-30").daily_days == 90


def test_longer_retention_with_suspended_items_is_409(
    admin: Any, api: Any, policy: Policy, item: Any
) -> None:
    response = api(admin).post(
        f"{V}/vault-one/items/docs/stop-protection/", {"delete_data": False}, format="json"
    )
    assert response.status_code == 200, response.json()
    url = f"{V}/vault-one/policies/daily-30/"
    longer = {"retention": {"daily_days": 90}}

    preview = api(admin).patch(url + "?dry_run=true", longer, format="json")
    assert preview.status_code == 200
    assert preview.json()["allowed"] is False
    assert preview.json()["refusal"]["code"] == "retention_suspended_items"

    assert_error(api(admin).patch(url, longer, format="json"), 409, "retention_suspended_items")
    assert Policy.objects.get(pk=policy.pk).daily_days == 30


def test_delete_unused_policy_answers_204(admin: Any, api: Any, policy: Policy) -> None:
    response = api(admin).delete(f"{V}/vault-one/policies/daily-30/")
    assert response.status_code == 204
    assert not Policy.objects.filter(pk=policy.pk).exists()


def test_delete_policy_in_use_is_409(admin: Any, api: Any, policy: Policy, item: Any) -> None:
    assert_error(api(admin).delete(f"{V}/vault-one/policies/daily-30/"), 409, "policy_in_use")
    assert Policy.objects.filter(pk=policy.pk).exists()


# --- protected items ------------------------------------------------------------------------


def test_protect_an_item_answers_201_with_the_item_shape(
    admin: Any, api: Any, policy: Policy, tmp_path: Path
) -> None:
    response = api(admin).post(
        f"{V}/vault-one/items/",
        {
            "name": "docs",
            "source": {"kind": "directory", "path": str(tmp_path)},
            "policy": "daily-30",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "docs"
    assert body["source"] == {"kind": "directory", "path": str(tmp_path), "host": ""}
    assert body["policy"] == "daily-30"
    assert body["protection_state"] == "protected"
    assert body["purge_at"] is None
    assert body["last_backup_at"] is None
    assert body["created_at"]
    assert ProtectedItem.objects.get(name="docs").policy == policy


def test_source_kind_defaults_to_directory(
    admin: Any, api: Any, policy: Policy, tmp_path: Path
) -> None:
    response = api(admin).post(
        f"{V}/vault-one/items/",
        {"name": "docs", "source": {"path": str(tmp_path)}, "policy": "daily-30"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["source"]["kind"] == "directory"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"source": {"kind": "directory", "path": "relative/dir"}}, "source.path"),
        ({"source": {"kind": "directory"}}, "source.path"),
        ({"source": {"kind": "directory", "path": ""}}, "source.path"),
        ({"source": {"kind": "directory", "path": "/no/such/directory"}}, "source.path"),
        ({"source": {"kind": "nfs", "path": "/srv"}}, "source.kind"),
        ({"source": None}, "source"),
        ({"policy": "no-such-policy"}, "policy"),
        ({"policy": None}, "policy"),
        ({"name": "a/b"}, "name"),
        ({"name": ""}, "name"),
    ],
)
def test_protect_with_bad_input_is_400_naming_the_field_and_saves_nothing(
    admin: Any, api: Any, policy: Policy, tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    body = {"name": "docs", "source": {"kind": "directory", "path": str(tmp_path)}}
    body["policy"] = "daily-30"
    body.update(change)
    response = api(admin).post(f"{V}/vault-one/items/", body, format="json")
    assert_error(response, 400, "validation_error", field)
    assert not ProtectedItem.objects.exists()


def test_protect_with_a_policy_of_another_vault_is_400(
    admin: Any, api: Any, vault: Vault, tmp_path: Path
) -> None:
    make_policy(admin, make_vault(admin, name="vault-two"), name="elsewhere")
    response = api(admin).post(
        f"{V}/vault-one/items/",
        {"name": "docs", "source": {"path": str(tmp_path)}, "policy": "elsewhere"},
        format="json",
    )
    assert_error(response, 400, "validation_error", "policy")
    assert not ProtectedItem.objects.exists()


def test_protect_a_duplicate_name_is_400(admin: Any, api: Any, item: Any, tmp_path: Path) -> None:
    response = api(admin).post(
        f"{V}/vault-one/items/",
        {"name": "docs", "source": {"path": str(tmp_path)}, "policy": "daily-30"},
        format="json",
    )
    assert_error(response, 400, "validation_error", "name")
    assert ProtectedItem.objects.count() == 1


def test_list_and_get_items(admin: Any, api: Any, item: Any, clock: Any) -> None:
    make_points(item, clock, (1,))
    listing = api(admin).get(f"{V}/vault-one/items/")
    assert listing.status_code == 200
    assert listing.json()["count"] == 1
    assert listing.json()["results"][0]["name"] == "docs"
    detail = api(admin).get(f"{V}/vault-one/items/docs/")
    assert detail.status_code == 200
    assert detail.json()["policy"] == "daily-30"
    assert detail.json()["last_backup_at"] is not None


def test_patch_item_moves_it_to_another_policy(
    admin: Any, api: Any, vault: Vault, item: Any
) -> None:
    longer = make_policy(admin, vault, name="daily-90", daily_days=90)
    response = api(admin).patch(f"{V}/vault-one/items/docs/", {"policy": "daily-90"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["policy"] == "daily-90"
    assert ProtectedItem.objects.get(pk=item.pk).policy == longer


def test_patch_item_dry_run_previews_and_changes_nothing(
    admin: Any, api: Any, vault: Vault, policy: Policy, item: Any, clock: Any
) -> None:
    make_policy(admin, vault, name="daily-90", daily_days=90)
    (point,) = make_points(item, clock, (1,))
    response = api(admin).patch(
        f"{V}/vault-one/items/docs/?dry_run=true", {"policy": "daily-90"}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["dry_run"] is True
    assert body["allowed"] is True
    assert body["retention_longer"] is True
    assert [change["id"] for change in body["point_changes"]] == [point.pk]
    assert body["point_changes"][0]["delta_days"] == 60
    assert ProtectedItem.objects.get(pk=item.pk).policy == policy
    assert RecoveryPoint.objects.get(pk=point.pk).expires_at == point.expires_at


def test_patch_item_to_an_unknown_policy_is_400(admin: Any, api: Any, item: Any) -> None:
    response = api(admin).patch(f"{V}/vault-one/items/docs/", {"policy": "nope"}, format="json")
    assert_error(response, 400, "validation_error", "policy")
    response = api(admin).patch(f"{V}/vault-one/items/docs/", {}, format="json")
    assert_error(response, 400, "validation_error", "policy")


def test_enhanced_to_standard_move_is_400_naming_policy(
    admin: Any, api: Any, vault: Vault, tmp_path: Path
) -> None:
    enhanced = make_policy(
        admin, vault, name="hourly", kind="enhanced", frequency="hourly", instant_restore_days=7
    )
    make_policy(admin, vault, name="daily-90", daily_days=90)
    item = make_item(admin, vault, enhanced, tmp_path)
    url = f"{V}/vault-one/items/docs/"

    preview = api(admin).patch(url + "?dry_run=true", {"policy": "daily-90"}, format="json")
    assert preview.status_code == 200
    assert preview.json()["allowed"] is False
    assert preview.json()["refusal"]["code"] == "validation_error"

    assert_error(
        api(admin).patch(url, {"policy": "daily-90"}, format="json"),
        400,
        "validation_error",
        "policy",
    )
    assert ProtectedItem.objects.get(pk=item.pk).policy == enhanced


def test_immutable_recovery_services_vault_refuses_moving_an_item_to_a_shorter_policy(
    admin: Any, api: Any, tmp_path: Path
) -> None:
    vault = make_vault(admin, name="worm", immutability="enabled")
    policy = make_policy(admin, vault)
    make_policy(admin, vault, name="daily-10", daily_days=10)
    item = make_item(admin, vault, policy, tmp_path)
    url = f"{V}/worm/items/docs/"
    preview = api(admin).patch(url + "?dry_run=true", {"policy": "daily-10"}, format="json")
    assert preview.json()["refusal"]["code"] == "immutable_vault"
    assert_error(
        api(admin).patch(url, {"policy": "daily-10"}, format="json"), 409, "immutable_vault"
    )
    assert ProtectedItem.objects.get(pk=item.pk).policy == policy


def test_stop_protection_retaining_data_then_resume(admin: Any, api: Any, item: Any) -> None:
    response = api(admin).post(
        f"{V}/vault-one/items/docs/stop-protection/", {"delete_data": False}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["protection_state"] == "protection_stopped"
    assert response.json()["stopped_at"] is not None

    response = api(admin).post(f"{V}/vault-one/items/docs/resume/")
    assert response.status_code == 200, response.json()
    assert response.json()["protection_state"] == "protected"
    assert ProtectedItem.objects.get(pk=item.pk).protection_state == "protected"


def test_resume_a_protected_item_is_400(admin: Any, api: Any, item: Any) -> None:
    response = api(admin).post(f"{V}/vault-one/items/docs/resume/")
    assert_error(response, 400, "validation_error", "protection_state")


def test_stop_protection_needs_delete_data(admin: Any, api: Any, item: Any) -> None:
    response = api(admin).post(f"{V}/vault-one/items/docs/stop-protection/", {}, format="json")
    assert_error(response, 400, "validation_error", "delete_data")
    assert ProtectedItem.objects.get(pk=item.pk).protection_state == "protected"


def test_stop_protection_deleting_data_with_soft_delete_on_keeps_the_item(
    admin: Any, api: Any, item: Any, clock: Any
) -> None:
    make_points(item, clock, (1,))
    response = api(admin).post(
        f"{V}/vault-one/items/docs/stop-protection/", {"delete_data": True}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["protection_state"] == "soft_deleted"
    assert body["purge_at"].startswith("2026-03-15")
    assert RecoveryPoint.objects.filter(item=item).count() == 1


def test_stop_protection_deleting_data_with_soft_delete_off_answers_204(
    admin: Any, api: Any, vault: Vault, item: Any, clock: Any
) -> None:
    make_points(item, clock, (1,))
    # No soft-delete service is needed for this: set the vault's state directly.
    Vault.objects.filter(pk=vault.pk).update(soft_delete_state="disabled")
    response = api(admin).post(
        f"{V}/vault-one/items/docs/stop-protection/", {"delete_data": True}, format="json"
    )
    assert response.status_code == 204
    assert not ProtectedItem.objects.filter(pk=item.pk).exists()
    assert not RecoveryPoint.objects.exists()


def test_immutable_vault_refuses_stop_protection_deleting_unexpired_data(
    admin: Any, api: Any, clock: Any, tmp_path: Path
) -> None:
    vault = make_vault(admin, name="worm", immutability="enabled")
    item = make_item(admin, vault, make_policy(admin, vault), tmp_path)
    make_points(item, clock, (1,))
    response = api(admin).post(
        f"{V}/worm/items/docs/stop-protection/", {"delete_data": True}, format="json"
    )
    assert_error(response, 409, "immutable_vault")
    assert ProtectedItem.objects.get(pk=item.pk).protection_state == "protected"


# --- recovery points ------------------------------------------------------------------------


def test_recovery_points_newest_first_with_the_point_shape(
    admin: Any, api: Any, item: Any, clock: Any
) -> None:
    points = make_points(item, clock, (3, 1, 2))
    response = api(admin).get(f"{V}/vault-one/items/docs/recovery-points/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 3
    assert [p["id"] for p in body["results"]] == [points[1].pk, points[2].pk, points[0].pk]
    first = body["results"][0]
    assert set(first) >= {
        "id",
        "tier",
        "created_at",
        "expires_at",
        "tags",
        "logical_bytes",
        "stored_bytes",
        "digest",
        "on_demand",
    }
    assert first["tier"] == "vault_standard"
    assert "daily" in first["tags"]
    assert first["on_demand"] is False
    one = api(admin).get(f"{V}/vault-one/items/docs/recovery-points/{points[0].pk}/")
    assert one.status_code == 200
    assert one.json()["id"] == points[0].pk


def test_recovery_points_are_paginated(admin: Any, api: Any, item: Any, clock: Any) -> None:
    make_points(item, clock, tuple(range(1, 53)))
    body = api(admin).get(f"{V}/vault-one/items/docs/recovery-points/").json()
    assert body["count"] == 52
    assert len(body["results"]) == 50
    assert body["next"] is not None
    assert body["previous"] is None


def test_delete_a_point_answers_204_and_soft_deletes_it_while_soft_delete_is_on(
    admin: Any, api: Any, item: Any, clock: Any
) -> None:
    (point,) = make_points(item, clock, (1,))
    url = f"{V}/vault-one/items/docs/recovery-points/{point.pk}/"
    response = api(admin).delete(url)
    assert response.status_code == 204
    kept = api(admin).get(url).json()
    assert kept["state"] == "soft_deleted"
    assert kept["soft_deleted_until"] == "2026-03-15T12:00:00Z"  # 14 days of soft delete
    # Deleting it again does not purge it sooner ...
    assert_error(api(admin).delete(url), 400, "validation_error")
    # ... and a later retain-until brings it back.
    back = api(admin).patch(url, {"retain_until": "2026-06-01T00:00:00Z"}, format="json")
    assert (back.json()["state"], back.json()["soft_deleted_until"]) == ("active", None)


def test_delete_a_point_without_soft_delete_removes_it(
    admin: Any, api: Any, item: Any, clock: Any
) -> None:
    vault_services.soft_delete_set(
        actor=admin, vault=item.vault, state="disabled", confirm_purge_count=0
    )
    (point,) = make_points(item, clock, (1,))
    response = api(admin).delete(f"{V}/vault-one/items/docs/recovery-points/{point.pk}/")
    assert response.status_code == 204
    assert not RecoveryPoint.objects.filter(pk=point.pk).exists()


def test_immutable_vault_refuses_deleting_an_unexpired_point(
    admin: Any, api: Any, clock: Any, tmp_path: Path
) -> None:
    vault = make_vault(admin, name="worm", kind="backup", immutability="enabled")
    item = make_item(admin, vault, make_policy(admin, vault), tmp_path)
    (point,) = make_points(item, clock, (1,))
    response = api(admin).delete(f"{V}/worm/items/docs/recovery-points/{point.pk}/")
    assert_error(response, 409, "immutable_vault")
    assert RecoveryPoint.objects.filter(pk=point.pk).exists()


def test_patch_point_retain_until_extends_its_expiry(
    admin: Any, api: Any, item: Any, clock: Any
) -> None:
    (point,) = make_points(item, clock, (1,))
    later = point.expires_at + timedelta(days=100)
    response = api(admin).patch(
        f"{V}/vault-one/items/docs/recovery-points/{point.pk}/",
        {"retain_until": later.isoformat()},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert RecoveryPoint.objects.get(pk=point.pk).expires_at == later


def test_immutable_vault_refuses_shortening_a_points_expiry(
    admin: Any, api: Any, clock: Any, tmp_path: Path
) -> None:
    vault = make_vault(admin, name="worm", immutability="enabled")
    item = make_item(admin, vault, make_policy(admin, vault), tmp_path)
    (point,) = make_points(item, clock, (1,))
    response = api(admin).patch(
        f"{V}/worm/items/docs/recovery-points/{point.pk}/",
        {"retain_until": (clock.now() + timedelta(days=2)).isoformat()},
        format="json",
    )
    assert_error(response, 409, "immutable_vault")
    assert RecoveryPoint.objects.get(pk=point.pk).expires_at == point.expires_at


@pytest.mark.parametrize("value", ["yesterday", "2020-01-01T00:00:00Z", None])
def test_patch_point_with_a_bad_retain_until_is_400(
    admin: Any, api: Any, item: Any, clock: Any, value: Any
) -> None:
    (point,) = make_points(item, clock, (1,))
    response = api(admin).patch(
        f"{V}/vault-one/items/docs/recovery-points/{point.pk}/",
        {"retain_until": value},
        format="json",
    )
    assert_error(response, 400, "validation_error", "retain_until")
    assert RecoveryPoint.objects.get(pk=point.pk).expires_at == point.expires_at


# --- roles ----------------------------------------------------------------------------------


def _reader_writes(tmp_path: Path, point_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    points = f"{V}/vault-one/items/docs/recovery-points/{point_id}/"
    return [
        ("post", f"{V}/vault-one/policies/", full_policy(name="mine")),
        ("patch", f"{V}/vault-one/policies/daily-30/", {"retention": {"daily_days": 60}}),
        ("delete", f"{V}/vault-one/policies/spare/", {}),
        (
            "post",
            f"{V}/vault-one/items/",
            {"name": "new", "source": {"path": str(tmp_path)}, "policy": "daily-30"},
        ),
        ("patch", f"{V}/vault-one/items/docs/", {"policy": "spare"}),
        ("post", f"{V}/vault-one/items/docs/stop-protection/", {"delete_data": False}),
        ("post", f"{V}/vault-one/items/stopped/resume/", {}),
        ("post", f"{V}/vault-one/items/docs/stop-protection/", {"delete_data": True}),
        ("patch", points, {"retain_until": "2030-01-01T00:00:00Z"}),
        ("delete", points, {}),
    ]


def test_a_reader_sees_everything_and_gets_403_on_every_write(
    admin: Any,
    reader: Any,
    api: Any,
    vault: Vault,
    policy: Policy,
    item: Any,
    clock: Any,
    tmp_path: Path,
) -> None:
    make_policy(admin, vault, name="spare")
    stopped = make_item(admin, vault, policy, tmp_path, name="stopped")
    vault_services.protection_stop(actor=admin, item=stopped, delete_data=False)
    (point,) = make_points(item, clock, (1,))
    client = api(reader)
    for url in [
        f"{V}/vault-one/policies/",
        f"{V}/vault-one/policies/daily-30/",
        f"{V}/vault-one/items/",
        f"{V}/vault-one/items/docs/",
        f"{V}/vault-one/items/docs/recovery-points/",
        f"{V}/vault-one/items/docs/recovery-points/{point.pk}/",
    ]:
        assert client.get(url).status_code == 200, url

    def state() -> Any:
        return (
            sorted(p.audit_state()["retention"]["daily_days"] for p in Policy.objects.all()),
            sorted(Policy.objects.values_list("name", flat=True)),
            sorted(ProtectedItem.objects.values_list("name", "policy__name", "protection_state")),
            sorted(RecoveryPoint.objects.values_list("pk", "expires_at")),
        )

    before = state()
    for method, url, body in _reader_writes(tmp_path, point.pk):
        response = getattr(client, method)(url, body, format="json")
        assert_error(response, 403, "permission_denied")
    assert state() == before
    assert AuditRecord.objects.filter(
        actor=reader, outcome="refused", code="permission_denied"
    ).count() == len(_reader_writes(tmp_path, point.pk))


def test_a_readers_dry_run_reports_the_refusal(reader: Any, api: Any, policy: Policy) -> None:
    response = api(reader).patch(
        f"{V}/vault-one/policies/daily-30/?dry_run=true",
        {"retention": {"daily_days": 60}},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["allowed"] is False
    assert response.json()["refusal"]["code"] == "permission_denied"
    assert Policy.objects.get(pk=policy.pk).daily_days == 30


def test_a_user_without_a_role_cannot_read(api: Any, item: Any) -> None:
    nobody = make_user("nobody", "reader")
    nobody.groups.clear()
    for url in [f"{V}/vault-one/policies/", f"{V}/vault-one/items/docs/recovery-points/"]:
        assert_error(api(nobody).get(url), 403, "permission_denied")


def test_anonymous_calls_are_401(item: Any) -> None:
    response = APIClient().get(f"{V}/vault-one/policies/")
    assert_error(response, 401, "not_authenticated")


def test_schema_documents_the_new_endpoints(admin: Any, api: Any) -> None:
    response = api(admin).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in [
        "/api/v1/vaults/{name}/policies/",
        "/api/v1/vaults/{name}/policies/{policy}/",
        "/api/v1/vaults/{name}/items/",
        "/api/v1/vaults/{name}/items/{item}/",
        "/api/v1/vaults/{name}/items/{item}/stop-protection/",
        "/api/v1/vaults/{name}/items/{item}/resume/",
        "/api/v1/vaults/{name}/items/{item}/recovery-points/",
        "/api/v1/vaults/{name}/items/{item}/recovery-points/{id}/",
    ]:
        assert path in paths, path
