"""Hostile input (issue 12, SPEC 4 and 8): each test sends the attack as it was made.

No input, however hostile, gets a 500: deep JSON, NUL bytes and lone surrogates in bodies,
paths, queries and headers, and huge bodies, are answered with ``{code, detail}`` on the API
and a plain page elsewhere. CSV exports never carry a live formula. A backup source swapped
for a symlink into Holdfast's own storage after it was protected is refused when the backup
opens it, and nothing of the storage is read.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from policies import services as policy_services
from portal.gate import DomainError
from portal.models import Alert, AuditRecord
from tests.conftest import make_user
from tests.factories import make_vault
from vaults import locations, rules
from vaults import services as vault_services
from vaults.jobs import requests, runner
from vaults.models import Job, ProtectedItem, RecoveryPoint, Vault
from vaults.storage import StorageError
from vaults.storage.crypto import sealed

pytestmark = pytest.mark.django_db

DEEP = "[" * 100_000 + "]" * 100_000  # past Python's recursion limit in json.loads
NUL = "\u0000"
SURROGATE = "\ud800"


def _json(data: str) -> dict[str, Any]:
    return {"data": data, "content_type": "application/json"}


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code and body["detail"], body
    return body


@pytest.fixture
def client_for(api: Any) -> Any:
    def make(user: Any) -> Any:
        client = api(user)
        client.raise_request_exception = False  # a 500 is an answer to assert on, not a raise
        return client

    return make


@pytest.fixture
def world(admin: Any, tmp_path: Path) -> dict[str, Any]:
    vault = make_vault(admin, name="hostile")
    policy = policy_services.policy_create(actor=admin, vault=vault, name="daily", daily_days=30)
    (tmp_path / "src").mkdir()
    item = vault_services.item_protect(
        actor=admin, vault=vault, name="files", source_path=str(tmp_path / "src"), policy=policy
    )
    return {"vault": vault, "policy": policy, "item": item}


# --- deep JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [DEEP, "[" * 5000 + "]" * 5000, '{"a":' * 40 + "1" + "}" * 40])
def test_deep_json_to_the_token_endpoint_is_a_400_without_signing_in(body: str) -> None:
    client = Client(raise_request_exception=False)
    answer = client.post("/api/v1/auth/token/", **_json(body))
    assert "deeper than" in _error(answer, 400, "validation_error")["detail"]


def test_deep_json_in_a_tag_value_is_refused_and_creates_nothing(
    admin: Any, client_for: Any
) -> None:
    deep_tags = {"env": json.loads("[" * 40 + "]" * 40)}
    body = json.dumps({"name": "deep", "kind": "backup", "region": "x", "tags": deep_tags})
    answer = client_for(admin).post("/api/v1/vaults/", **_json(body))
    _error(answer, 400, "validation_error")
    assert not Vault.objects.filter(name="deep").exists()


# --- NUL bytes and lone surrogates in bodies ------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "field"),
    [
        ('{"env' + "\\u0000" + '": "prod"}', "tags"),  # NUL in a tag key
        ('{"\\ud800": "prod"}', "tags"),  # a lone surrogate as a tag key
        ('{"env": "pr\\ud800od"}', "tags.env"),
        ('{"env": "prod\\u0000"}', "tags.env"),
    ],
)
def test_unstorable_tags_are_a_400_naming_the_field_and_create_nothing(
    admin: Any, client_for: Any, tags: str, field: str
) -> None:
    records = AuditRecord.objects.count()
    body = '{"name": "tagged", "kind": "backup", "region": "westeurope", "tags": ' + tags + "}"
    answer = client_for(admin).post("/api/v1/vaults/", **_json(body))
    error = _error(answer, 400, "validation_error")
    assert error["field"] == field and error["detail"].startswith(f"{field}: ")
    assert not Vault.objects.filter(name="tagged").exists()
    assert AuditRecord.objects.count() == records


def test_a_nul_tag_key_sent_as_form_fields_is_refused(admin: Any, client_for: Any) -> None:
    answer = client_for(admin).post(
        "/api/v1/vaults/",
        {"name": "formish", "kind": "backup", "region": "x", f"tags.env{NUL}": "prod"},
    )
    _error(answer, 400, "validation_error")
    assert not Vault.objects.filter(name="formish").exists()


def test_a_nul_tag_key_in_the_create_form_is_a_form_error(admin: Any, client: Client) -> None:
    client.force_login(admin)
    page = client.post(
        "/vaults/new/", {"name": "formvault", "kind": "backup", "region": "x", "tags": f"e{NUL}=1"}
    )
    assert page.status_code == 200 and b"Null characters are not allowed" in page.content
    assert not Vault.objects.filter(name="formvault").exists()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/vaults/", {"name": "r", "kind": "backup", "region": SURROGATE}, "region"),
        ("/api/v1/vaults/hostile/items/", {"source": {"path": "/x" + SURROGATE}}, "source.path"),
        ("/api/v1/vaults/hostile/policies/", {"name": "p" + NUL}, "name"),
        ("/api/v1/vaults/hostile/immutability/lock/", {"confirmation": SURROGATE}, "confirmation"),
    ],
)
def test_a_lone_surrogate_or_nul_anywhere_in_a_json_body_is_a_400(
    admin: Any, world: dict[str, Any], client_for: Any, path: str, body: Any, field: str
) -> None:
    # json.dumps writes a lone surrogate as the escape "\ud800", as an attacker would send it.
    answer = client_for(admin).post(path, **_json(json.dumps(body)))
    error = _error(answer, 400, "validation_error")
    assert error["field"] == field
    # The sentence names the problem rather than a truncated "U+D800." (DRF's own message).
    assert "NUL" in error["detail"] or "surrogate" in error["detail"]


def test_a_lone_surrogate_in_an_access_request_justification_is_a_400(
    admin: Any, security_admin: Any, client_for: Any
) -> None:
    client_for(security_admin).post("/api/v1/resource-guards/", {"name": "rg"}, format="json")
    answer = client_for(admin).post(
        "/api/v1/resource-guards/rg/access-requests/",
        **_json(json.dumps({"justification": "why" + SURROGATE, "duration_minutes": 60})),
    )
    assert _error(answer, 400, "validation_error")["field"] == "justification"


# --- the services refuse too, for callers without a serializer (commands, the shell) --------


def test_services_refuse_unstorable_text_before_the_gate(
    admin: Any, world: dict[str, Any], tmp_path: Path
) -> None:
    records = AuditRecord.objects.count()
    attempts = [
        ("tags", lambda: make_vault(admin, name="svc", tags={f"k{NUL}": "v"})),
        ("region", lambda: make_vault(admin, name="svc", region=SURROGATE)),
        ("name", lambda: make_vault(admin, name=f"svc{NUL}")),
        (
            "source.path",
            lambda: vault_services.item_protect(
                actor=admin,
                vault=world["vault"],
                name="svc",
                source_path=f"{tmp_path}/{NUL}",
                policy=world["policy"],
            ),
        ),
        (
            "name",
            lambda: policy_services.policy_create(
                actor=admin, vault=world["vault"], name=SURROGATE, daily_days=7
            ),
        ),
    ]
    for field, attempt in attempts:
        with pytest.raises(DomainError) as refusal:
            attempt()
        assert (refusal.value.code, refusal.value.field) == ("validation_error", field)
    assert AuditRecord.objects.count() == records
    assert not Vault.objects.filter(name__startswith="svc").exists()
    assert not ProtectedItem.objects.filter(name="svc").exists()


# --- NUL in path segments, queries and headers ----------------------------------------------

NUL_API_PATHS = [
    "/api/v1/vaults/%00/",
    "/api/v1/resource-guards/%00/",
    "/api/v1/vaults/hostile/policies/%00/",
    "/api/v1/vaults/hostile/items/%00/",
    "/api/v1/vaults/%00/items/",
    "/api/v1/vaults/hostile/items/%00/recovery-points/",
    "/api/v1/users/%00/",
]
NUL_PAGES = [
    "/vaults/%00/",
    "/vaults/%00/policies/",
    "/vaults/%00/items/",
    "/vaults/hostile/%00/",
    "/resource-guards/%00/",
]


@pytest.mark.parametrize("path", NUL_API_PATHS)
def test_a_nul_path_segment_is_a_404_on_the_api(
    path: str, admin: Any, world: dict[str, Any], client_for: Any
) -> None:
    _error(client_for(admin).get(path), 404, "not_found")


@pytest.mark.parametrize("path", NUL_PAGES)
def test_a_nul_path_segment_is_a_plain_404_page(
    path: str, admin: Any, world: dict[str, Any], client: Client
) -> None:
    client.force_login(admin)
    client.raise_request_exception = False
    page = client.get(path)
    assert page.status_code == 404 and b"NUL" in page.content


@pytest.mark.parametrize(
    "path", ["/api/v1/approvals/0.5/approve/", "/api/v1/vaults/%ED%A0%80/", "/api/v1/nothing/"]
)
def test_an_api_address_no_route_matches_is_a_json_404(
    path: str, admin: Any, client_for: Any
) -> None:
    # Found by the hostile fuzz run: Django's HTML 404 page answered these.
    _error(client_for(admin).post(path, {}), 404, "not_found")


def test_a_page_address_no_route_matches_is_still_the_sites_404_page(client: Client) -> None:
    page = client.get("/no-such-page/")
    assert page.status_code in {302, 404} and not page["Content-Type"].startswith(
        "application/json"
    )


@pytest.mark.parametrize(
    "url", ["/api/v1/vaults/?search=%00", "/api/v1/jobs/?vault=a%00", "/api/v1/audit/?x%00=1"]
)
def test_a_nul_in_the_query_string_is_a_400(url: str, admin: Any, client_for: Any) -> None:
    _error(client_for(admin).get(url), 400, "validation_error")


def test_a_nul_in_the_query_string_of_a_page_is_a_plain_400(admin: Any, client: Client) -> None:
    client.force_login(admin)
    assert client.get("/backup-center/?search=%00").status_code == 400


@pytest.mark.parametrize(
    ("bound", "at", "count"),
    [
        ("until", "9999-12-31T23:59:59-14:00", "all"),
        ("since", "9999-12-31T23:59:59-23:59", "none"),
        ("since", "0001-01-01T00:00:00+14:00", "all"),
        ("until", "0001-01-01T00:00:00+14:00", "none"),
    ],
)
def test_an_audit_time_beyond_the_calendar_in_utc_filters_instead_of_failing(
    admin: Any,
    world: dict[str, Any],
    client_for: Any,
    client: Client,
    bound: str,
    at: str,
    count: str,
) -> None:
    expected = AuditRecord.objects.count() if count == "all" else 0
    answer = client_for(admin).get("/api/v1/audit/", {bound: at})
    assert answer.status_code == 200 and answer.json()["count"] == expected
    client.force_login(admin)
    assert client.get("/audit/", {bound: at}).status_code == 200
    assert client.get("/audit/", {bound: at, "format": "csv"}).status_code == 200


def test_an_on_demand_backup_kept_past_year_9999_in_utc_is_refused_not_stored(
    admin: Any, world: dict[str, Any], client: Client, client_for: Any
) -> None:
    """The form took 9999-12-31T23:59:59-14:00 (year 10000 in UTC): PostgreSQL stored the
    point and every list of the item's points answered 500 from then on."""
    item = world["item"]
    client.force_login(admin)
    page = client.post(
        f"/jobs/items/{item.pk}/backup/", {"retain_until": "9999-12-31T23:59:59-14:00"}
    )
    assert page.status_code == 200 and b"outside the years 1 to 9999" in page.content
    assert not Job.objects.filter(kind="backup").exists()
    with pytest.raises(DomainError) as refusal:
        point = vault_services.point_record(item=item)
        vault_services.point_retain_until(
            actor=admin,
            point=point,
            retain_until=datetime(9999, 12, 31, 23, 59, tzinfo=timezone(-timedelta(hours=14))),
        )
    assert refusal.value.field == "retain_until"
    listing = client_for(admin).get("/api/v1/vaults/hostile/items/files/recovery-points/")
    assert listing.status_code == 200


def test_a_nul_in_the_authorization_header_is_a_400() -> None:
    answer = Client(raise_request_exception=False).get(
        "/api/v1/vaults/", headers={"Authorization": f"Token abc{NUL}def"}
    )
    _error(answer, 400, "validation_error")


def test_a_nul_in_the_session_cookie_signs_the_request_out_rather_than_failing(
    admin: Any,
) -> None:
    client = Client(raise_request_exception=False)
    client.cookies["sessionid"] = f"abc{NUL}defghijklmnop"
    _error(client.get("/api/v1/vaults/"), 401, "not_authenticated")
    assert client.get("/backup-center/").status_code == 302  # to the sign-in page


# --- huge bodies ----------------------------------------------------------------------------

FIVE_MB = json.dumps({"name": "x" * (5 * 1024 * 1024)})


@pytest.mark.parametrize("path", ["/api/v1/vaults/", "/api/v1/auth/token/"])
def test_a_5_mb_body_answers_413_with_code_and_detail(
    path: str, admin: Any, client_for: Any
) -> None:
    answer = client_for(admin).post(path, **_json(FIVE_MB))
    _error(answer, 413, "request_too_large")


def test_a_5_mb_form_to_a_page_is_a_plain_413(admin: Any, client: Client) -> None:
    client.force_login(admin)
    page = client.post("/vaults/new/", {"name": "x" * (5 * 1024 * 1024)})
    assert page.status_code == 413 and page["Content-Type"].startswith("text/html")
    assert not Vault.objects.exclude(name="vault-one").exists()


def test_too_many_form_fields_to_the_api_is_a_json_400(admin: Any, client_for: Any) -> None:
    fields = "&".join(f"f{i}=1" for i in range(1500))  # over DATA_UPLOAD_MAX_NUMBER_FIELDS
    answer = client_for(admin).post(
        "/api/v1/vaults/", fields, content_type="application/x-www-form-urlencoded"
    )
    _error(answer, 400, "validation_error")


# --- CSV exports ----------------------------------------------------------------------------

FORMULA = '=HYPERLINK("http://evil.example/","x")'


def _csv(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_portfolio_csv_never_carries_a_live_formula(admin: Any, client: Client) -> None:
    make_vault(admin, name="formula", region=FORMULA, tags={"+cmd": "", "@x": "-1"})
    make_vault(admin, name="plain", region="-westeurope\t")
    client.force_login(admin)
    rows = {row["name"]: row for row in _csv(client.get("/backup-center/export.csv"))}
    assert rows["formula"]["region"] == "'" + FORMULA
    assert rows["formula"]["tags"] == "'+cmd;@x=-1"
    assert rows["plain"]["region"] == "'-westeurope\t"
    for row in rows.values():
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), row


def test_the_audit_csv_never_carries_a_live_formula(client: Client) -> None:
    # Django's usernames allow + - @, so an account can be named like a formula.
    actor = make_user("-2+3", "backup_admin")
    make_vault(actor, name="audited", region=FORMULA)
    client.force_login(actor)
    rows = _csv(client.get("/audit/", {"format": "csv", "vault": "audited"}))
    assert rows and {row["actor_name"] for row in rows} == {"'-2+3"}
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), row


# --- a protected source swapped for a symlink -----------------------------------------------


@pytest.fixture
def roots(settings: Any, tmp_path: Path) -> dict[str, Path]:
    settings.HOLDFAST_STORAGE_ROOT = tmp_path / "storage"
    settings.VAR_DIR = tmp_path / "var"
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "holdfast.sqlite3").write_text("the control plane's database\n")
    source = tmp_path / "data" / "src"
    source.mkdir(parents=True)
    (source / "report.txt").write_text("ordinary data\n")
    return {"storage": tmp_path / "storage", "var": tmp_path / "var", "source": source}


def _protected_and_backed_up(admin: Any, source: Path) -> ProtectedItem:
    vault = make_vault(admin, name="swapped")
    policy = policy_services.policy_create(actor=admin, vault=vault, name="p", daily_days=30)
    item = vault_services.item_protect(
        actor=admin, vault=vault, name="src", source_path=str(source), policy=policy
    )
    first = runner.job_run(job_id=requests.backup_request(actor=admin, item=item).pk)
    assert first is not None and first.status == "completed", first and first.error
    return item


def _tree(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): path.stat().st_size
        for path in root.rglob("*")
        if path.is_file()
    }


@pytest.mark.parametrize("target", ["storage", "var"])
def test_a_source_swapped_for_a_symlink_into_holdfasts_own_files_is_refused_at_backup(
    admin: Any, roots: dict[str, Path], target: str
) -> None:
    source = roots["source"]
    item = _protected_and_backed_up(admin, source)
    points = RecoveryPoint.objects.filter(item=item).count()
    storage_before = _tree(roots["storage"])
    # The attack: after protection, the directory becomes a symlink into Holdfast's files.
    source.rename(source.with_name("src-moved"))
    source.symlink_to(roots[target], target_is_directory=True)

    job = runner.job_run(job_id=requests.backup_request(actor=admin, item=item).pk)

    assert job is not None and job.status == "failed"
    assert f"now leads to {roots[target].resolve()}" in job.error
    assert "Holdfast's own storage or data" in job.error and "nothing was read" in job.error
    assert RecoveryPoint.objects.filter(item=item).count() == points
    # Nothing written, so nothing of the storage was read into a point.
    assert _tree(roots["storage"]) == storage_before
    alert = Alert.objects.get(kind="backup_failed")
    assert "now leads to" in alert.message


def test_a_source_swapped_to_leave_the_source_roots_is_refused_at_backup(
    admin: Any, roots: dict[str, Path], settings: Any, tmp_path: Path
) -> None:
    settings.HOLDFAST_SOURCE_ROOTS = [tmp_path / "data"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.txt").write_text("not to be backed up\n")
    item = _protected_and_backed_up(admin, roots["source"])
    roots["source"].rename(roots["source"].with_name("src-moved"))
    roots["source"].symlink_to(elsewhere, target_is_directory=True)
    job = runner.job_run(job_id=requests.backup_request(actor=admin, item=item).pk)
    assert job is not None and job.status == "failed"
    assert "outside the directories this installation backs up" in job.error


def test_a_source_that_is_a_symlink_to_an_allowed_directory_still_backs_up(
    admin: Any, roots: dict[str, Path], tmp_path: Path
) -> None:
    link = tmp_path / "link-to-src"
    link.symlink_to(roots["source"], target_is_directory=True)
    _protected_and_backed_up(admin, link)


def test_a_swap_after_the_check_is_not_followed_the_scan_reads_the_directory_opened(
    admin: Any, roots: dict[str, Path]
) -> None:
    """The race: the check passes, then the source becomes a symlink to the storage before
    the scan. The backup reads the directory that was opened, never the path again."""
    source = roots["source"]
    item = _protected_and_backed_up(admin, source)
    store = locations.vault_store(item.vault)

    def check_then_swap(path: str, opened: str) -> str | None:
        refusal = rules.backup_source_refusal(path, opened)
        source.rename(source.with_name("src-moved"))
        source.symlink_to(roots["storage"], target_is_directory=True)
        return refusal

    result = store.backup(source, "rp-race", check_source=check_then_swap)
    names = {node.path for node in store.manifest("rp-race").nodes}
    assert names == {"", "report.txt"} and result.file_count == 1
    assert store.manifest("rp-race").source == str(source)


_SWAP_ON_OPEN: dict[str, Any] = {}


def _swap_when_opened(event: str, args: tuple[Any, ...]) -> None:
    # Runs in the backup's own thread at the moment it opens a file: a deterministic race.
    # (The readahead thread opens files early only to warm the page cache; it reads nothing.)
    if threading.current_thread().name.startswith("holdfast-readahead"):
        return
    trigger = _SWAP_ON_OPEN.get("trigger")
    if event == "open" and trigger and isinstance(args[0], str) and args[0].endswith(trigger):
        _SWAP_ON_OPEN.pop("trigger")
        _SWAP_ON_OPEN["swap"]()


sys.addaudithook(_swap_when_opened)


def test_a_directory_swapped_for_a_symlink_mid_backup_is_not_read_through(
    roots: dict[str, Path],
) -> None:
    """The scan saw z/ as a directory; while the backup reads a-first.bin, z/ becomes a
    symlink to a directory of the store holding a file of the same name. O_NOFOLLOW guards
    only the last component: the file must still not be read."""
    from vaults.storage import LocalBackend, VaultStore

    source = roots["source"]
    (source / "a-first.bin").write_bytes(os.urandom(300_000))
    (source / "z").mkdir()
    (source / "z" / "secret.txt").write_text("ordinary\n")
    inside_store = roots["storage"] / "keys"
    inside_store.mkdir(parents=True)
    (inside_store / "secret.txt").write_text("THE STORE'S OWN SECRET\n")
    store = VaultStore(sealed(LocalBackend(roots["storage"] / "vaults" / "v")))

    def swap() -> None:
        (source / "z").rename(source / "z-moved")
        (source / "z").symlink_to(inside_store, target_is_directory=True)

    _SWAP_ON_OPEN.update(trigger="/a-first.bin", swap=swap)
    try:
        result = store.backup(source, "p1")
    finally:
        _SWAP_ON_OPEN.clear()
    assert (source / "z").is_symlink()  # the swap happened mid-backup
    assert "z/secret.txt" in result.skipped
    files = {node.path for node in store.manifest("p1").nodes if node.kind == "file"}
    assert files == {"a-first.bin", "report.txt"}


def test_an_unreadable_source_names_its_own_path_not_the_descriptor(tmp_path: Path) -> None:
    from vaults.storage import LocalBackend, VaultStore

    store = VaultStore(sealed(LocalBackend(tmp_path / "store")))
    with pytest.raises(StorageError) as missing:
        store.backup(tmp_path / "absent", "p1")
    assert str(tmp_path / "absent") in str(missing.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="is not a directory"):
        store.backup(tmp_path / "file", "p1")
    if os.geteuid() == 0:
        return  # root reads through permissions: the rest cannot be staged
    locked = tmp_path / "src" / "locked"
    locked.mkdir(parents=True)
    locked.chmod(0)
    try:
        with pytest.raises(StorageError) as unreadable:
            store.backup(tmp_path / "src", "p2")
        assert str(locked) in str(unreadable.value) and "/proc/" not in str(unreadable.value)
    finally:
        locked.chmod(0o700)


def test_jobs_table_unchanged_by_refused_hostile_requests(admin: Any, client_for: Any) -> None:
    """None of the refusals above reach a service: no job, no audit record."""
    records, queued = AuditRecord.objects.count(), Job.objects.count()
    client = client_for(admin)
    client.post("/api/v1/vaults/", **_json(DEEP))
    client.get("/api/v1/vaults/%00/")
    client.post("/api/v1/vaults/", **_json(FIVE_MB))
    assert (AuditRecord.objects.count(), Job.objects.count()) == (records, queued)
