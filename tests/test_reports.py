"""The compliance report (issue 18, docs/reports.md) against a hand-built fixture whose
every figure is worked out below: backups, RPO share, drills, state changes, growth; its
query count, the page, the API's JSON, CSV and PDF, and the weekly e-mail."""

from __future__ import annotations

import csv
import io
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from pypdf import PdfReader

from policies import services as policy_services
from portal import clock as clock_module
from portal.models import AuditRecord
from tests.conftest import api_client_for, make_user
from tests.factories import make_vault
from vaults import report_mail, reports
from vaults import services as vault_services
from vaults.models import Job, ProtectedItem, RecoveryPoint, Vault
from vaults.tasks import report_email

START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 3, 8, tzinfo=UTC)
H = 3600
SOURCES = Path(tempfile.mkdtemp(prefix="holdfast-report-sources-"))


def at(day: int, hour: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def _job(item: ProtectedItem, status: str, ended: datetime, kind: str = "backup") -> None:
    Job.objects.create(
        kind=kind,
        status=status,
        vault=item.vault,
        item=item,
        created_at=ended - timedelta(minutes=5),
        started_at=ended - timedelta(minutes=5),
        ended_at=ended,
    )


def _item(actor: Any, vault: Vault, name: str, created: datetime, **policy: Any) -> ProtectedItem:
    source = SOURCES / name
    source.mkdir(parents=True, exist_ok=True)
    chosen = policy_services.policy_create(
        actor=actor, vault=vault, name=f"{name}-policy", daily_days=30, **policy
    )
    item = vault_services.item_protect(
        actor=actor, vault=vault, name=name, source_path=str(source), policy=chosen
    )
    ProtectedItem.objects.filter(pk=item.pk).update(created_at=created)
    return item


def _point(item: ProtectedItem, created: datetime, stored: int, tier: str) -> RecoveryPoint:
    point = vault_services.point_record(
        item=item, created_at=created, retain_until=created + timedelta(days=400)
    )
    RecoveryPoint.objects.filter(pk=point.pk).update(stored_bytes=stored, tier=tier)
    point.refresh_from_db()
    return point


def build(admin: Any) -> dict[str, Any]:
    """Two vaults, three items. The numbers each test expects follow from these rows alone.

    files (alpha, daily: RPO 24 h + 1 h grace = 25 h), since February:
        successes Feb 28 12:00, Mar 2 00:00, Mar 3 00:00, Mar 6 12:00; failures Mar 4, Mar 5.
        covered: Mar 1 00:00-13:00 (13 h) + Mar 2-3 (24 h, cut by the next backup)
        + Mar 3 00:00-Mar 4 01:00 (25 h) + Mar 6 12:00-Mar 7 13:00 (25 h) = 87 h of 168 h.
    db (alpha, weekly: 7 d + 1 h), created Mar 4 00:00: failure Mar 4 03:00, success Mar 4
        06:00 covering to the end: 90 h of 96 h.
    docs (beta, daily), since February: one failure Mar 7, no success: 0 h of 168 h.
    """
    clock_module.set_now(at(20, month=2))
    alpha = make_vault(admin, name="alpha-vault")
    beta = make_vault(admin, name="beta-vault")
    files = _item(admin, alpha, "files", at(1, month=2))
    db = _item(admin, alpha, "db", at(4), frequency="weekly", weekdays=["monday"], weekly_weeks=4)
    docs = _item(admin, beta, "docs", at(1, month=2))
    for ended in (at(28, 12, month=2), at(2), at(3), at(6, 12)):
        _job(files, "completed", ended)
    for ended in (at(4), at(5)):
        _job(files, "failed", ended)
    _job(files, "completed", END)  # at the end: outside [start, end)
    _job(files, "completed", at(5, 6), kind="restore")  # not a backup
    _job(db, "failed", at(4, 3))
    _job(db, "completed", at(4, 6))
    _job(docs, "failed", at(7))
    _point(files, at(20, month=2), 5000, "vault_standard")  # before the period
    drilled = _point(files, at(2), 1000, "vault_standard")
    _point(files, at(3), 200, "vault_archive")
    _point(db, at(4, 6), 50, "snapshot")
    _point(docs, at(5), 300, "vault_standard")
    drills = [
        {"status": "passed", "at": "2026-03-05T10:00:00+00:00", "files": 3, "seconds": 12.5},
        {"status": "failed", "at": "2026-03-06T10:00:00+00:00", "files": 3, "seconds": 2.0},
        {"status": "passed", "at": "2026-03-09T10:00:00+00:00", "files": 3, "seconds": 9.0},
    ]
    points = RecoveryPoint.objects.filter(item=files).order_by("created_at")
    for point, drill in zip(points, drills, strict=True):
        RecoveryPoint.objects.filter(pk=point.pk).update(drill=drill)
    clock_module.set_now(at(3, 12))
    vault_services.immutability_set(actor=admin, vault=alpha, state="enabled")
    clock_module.set_now(at(9))  # after the period: the state now, not a change in it
    alpha.refresh_from_db()
    vault_services.immutability_set(actor=admin, vault=alpha, state="disabled")
    clock_module.set_now(at(10))
    return {
        "alpha": alpha,
        "beta": beta,
        "files": files,
        "db": db,
        "docs": docs,
        "drilled": drilled,
    }


@pytest.fixture
def world(admin: Any) -> Any:
    yield build(admin)
    clock_module.set_now(None)


def test_the_report_matches_the_fixture_exactly(world: dict[str, Any]) -> None:
    report = reports.compliance(start=START, end=END)
    alpha, beta = report.vaults
    assert [alpha.name, beta.name] == ["alpha-vault", "beta-vault"]
    items = {item.name: item for _, item in report.items()}
    assert (items["files"].succeeded, items["files"].failed) == (3, 2)
    assert (items["db"].succeeded, items["db"].failed) == (1, 1)
    assert (items["docs"].succeeded, items["docs"].failed) == (0, 1)
    assert items["files"].rpo_covered_us == 87 * H * 10**6
    assert items["files"].rpo_judged_us == 168 * H * 10**6
    assert items["files"].rpo_met == Fraction(87, 168)
    assert items["db"].rpo_met == Fraction(90, 96)
    assert items["docs"].rpo_met == 0
    assert alpha.rpo_met == Fraction(87 + 90, 168 + 96)
    assert report.totals.rpo_met == Fraction(177, 168 * 2 + 96)
    assert (alpha.succeeded, alpha.failed, beta.succeeded, beta.failed) == (4, 3, 0, 1)
    assert (report.totals.succeeded, report.totals.failed) == (4, 4)

    drill = items["files"].last_drill
    assert drill is not None and (drill.at, drill.seconds) == (at(5, 10), 12.5)
    assert items["db"].last_drill is None and alpha.last_drill == drill
    assert report.totals.items_drilled == 1

    assert alpha.immutability == "disabled"  # now
    assert [(c.at, c.operation, c.actor, c.before, c.after) for c in alpha.changes] == [
        (at(3, 12), "immutability_enable", "alice", "disabled", "enabled")
    ]
    assert beta.changes == [] and report.totals.immutability_changes == 1

    assert items["files"].growth == {"snapshot": 0, "standard": 1000, "archive": 200}
    assert items["db"].growth == {"snapshot": 50, "standard": 0, "archive": 0}
    assert alpha.growth == {"snapshot": 50, "standard": 1000, "archive": 200}
    assert report.totals.growth == {"snapshot": 50, "standard": 1300, "archive": 200}
    stored = Vault.objects.get(name="alpha-vault")
    assert alpha.stored == {
        "snapshot": stored.stored_snapshot_bytes,
        "standard": stored.stored_standard_bytes,
        "archive": stored.stored_archive_bytes,
    }
    assert alpha.stored["standard"] == 6000 and alpha.stored["archive"] == 200

    assert len(report.days) == 7 and report.days[0].isoformat() == "2026-03-01"
    assert report.daily_backups["succeeded"] == [0, 1, 1, 1, 0, 1, 0]
    assert report.daily_backups["failed"] == [0, 0, 0, 2, 1, 0, 1]
    assert report.daily_growth["standard"] == [0, 1000, 0, 0, 300, 0, 0]


def _figures(vault: Any) -> tuple[Any, ...]:
    return (vault.name, vault.item_count, vault.succeeded, vault.failed, vault.rpo_covered_us,
            vault.rpo_judged_us, vault.rpo_met, vault.last_drill, vault.items_drilled,
            vault.growth, vault.changes)  # fmt: skip


@pytest.mark.parametrize("window", [slice(0, 1), slice(1, 3), slice(2, 100), slice(5, 10)])
def test_a_window_of_items_sums_the_vaults_in_sql_to_the_same_figures(
    world: dict[str, Any], window: slice
) -> None:
    """The page lists one window of items; the vaults' figures, summed in PostgreSQL
    instead of from the listed rows, and the listed rows must be the full report's."""
    full = reports.compliance(start=START, end=END)
    part = reports.compliance(start=START, end=END, window=window)
    assert [_figures(v) for v in part.vaults] == [_figures(v) for v in full.vaults]
    assert part.totals == full.totals
    assert (part.daily_backups, part.daily_growth) == (full.daily_backups, full.daily_growth)
    listed = [(vault.name, item) for vault, item in part.items()]
    assert listed == [(vault.name, item) for vault, item in full.items()][window]
    assert all(vault.items == [] for vault in part.vaults)  # only the window is listed


def test_a_windowed_report_runs_the_same_queries_for_any_fleet(admin: Any) -> None:
    build(admin)
    with CaptureQueriesContext(connection) as two:
        reports.compliance(start=START, end=END, window=slice(0, 2))
    for n in range(4):
        vault = make_vault(admin, name=f"more-{n}")
        item = _item(admin, vault, f"more-item-{n}", at(1, month=2))
        _job(item, "completed", at(2))
    with CaptureQueriesContext(connection) as six:
        reports.compliance(start=START, end=END, window=slice(0, 2))
    clock_module.set_now(None)
    # 7, a SET, and the figures' planner settings off and on (reports._in_item_order)
    assert len(two.captured_queries) == len(six.captured_queries) == 10


def test_filters_by_vault_and_tag(world: dict[str, Any]) -> None:
    only = reports.compliance(start=START, end=END, vault="beta-vault")
    assert [v.name for v in only.vaults] == ["beta-vault"]
    assert only.totals.items == 1 and only.totals.failed == 1
    Vault.objects.filter(name="alpha-vault").update(tags={"env": "prod"})
    tagged = reports.compliance(start=START, end=END, tags={"env": "prod"})
    assert [v.name for v in tagged.vaults] == ["alpha-vault"] and tagged.totals.items == 2
    assert reports.compliance(start=START, end=END, vault="nope").vaults == []


def test_the_query_count_does_not_grow_with_the_fleet(admin: Any) -> None:
    build(admin)
    with CaptureQueriesContext(connection) as two:
        reports.compliance(start=START, end=END)
    for n in range(4):
        vault = make_vault(admin, name=f"more-{n}")
        item = _item(admin, vault, f"more-item-{n}", at(1, month=2))
        _job(item, "completed", at(2))
        _point(item, at(2), 10, "vault_standard")
    with CaptureQueriesContext(connection) as six:
        report = reports.compliance(start=START, end=END)
    clock_module.set_now(None)
    assert report.totals.vaults == 6 and report.totals.items == 7
    # 5, a SET, and the figures' planner settings off and on (reports._in_item_order)
    assert len(two.captured_queries) == len(six.captured_queries) == 8


@pytest.mark.parametrize(
    ("start", "end", "sentence"),
    [
        (END, START, "start is after its end"),
        (START, START + timedelta(days=367), "longer than 366 days"),
    ],
)
def test_periods_it_cannot_answer_for_are_refused(
    db: None, start: datetime, end: datetime, sentence: str
) -> None:
    with pytest.raises(ValueError, match=sentence):
        reports.compliance(start=start, end=end)


# --- the API: JSON, CSV, PDF -----------------------------------------------------------------

URL = "/api/v1/reports/compliance/"
PERIOD = {"from": "2026-03-01", "to": "2026-03-07"}  # "to" a day: that day included


def test_the_api_answers_json_with_the_figures(world: dict[str, Any], reader: Any) -> None:
    body = api_client_for(reader).get(URL, PERIOD).json()
    assert (body["from"], body["to"]) == (START.isoformat(), END.isoformat())
    assert body["totals"]["backups"] == {"succeeded": 4, "failed": 4}
    assert body["totals"]["rpo_met"] == round(177 / 432, 6)
    alpha = body["vaults"][0]
    assert alpha["name"] == "alpha-vault" and alpha["immutability"]["state"] == "disabled"
    assert [c["operation"] for c in alpha["immutability"]["changes"]] == ["immutability_enable"]
    files = next(i for i in alpha["items"] if i["name"] == "files")
    assert files["rpo"] == {"met": round(87 / 168, 6), "covered_seconds": 87 * H,
                            "judged_seconds": 168 * H}  # fmt: skip
    assert files["last_drill"] == {"at": "2026-03-05T10:00:00+00:00", "seconds": 12.5}
    one = api_client_for(reader).get(URL, {**PERIOD, "vault": "beta-vault"}).json()
    assert [v["name"] for v in one["vaults"]] == ["beta-vault"]


def test_the_csv_parses_back_to_the_same_numbers(world: dict[str, Any], reader: Any) -> None:
    response = api_client_for(reader).get(URL, {**PERIOD, "format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    by_item = {row["item"]: row for row in rows}
    assert set(by_item) == {"files", "db", "docs"}
    files = by_item["files"]
    assert (files["vault"], files["backups_succeeded"], files["backups_failed"]) == (
        "alpha-vault",
        "3",
        "2",
    )
    assert Fraction(files["rpo_covered_seconds"]) / Fraction(files["rpo_judged_seconds"]) == (
        Fraction(87, 168)
    )
    assert files["last_drill_at"] == "2026-03-05T10:00:00+00:00"
    assert files["last_drill_seconds"] == "12.5"
    assert (files["growth_standard_bytes"], files["growth_archive_bytes"]) == ("1000", "200")
    assert files["vault_immutability_changes"] == "1" and files["vault_immutability"] == "disabled"
    assert by_item["db"]["rpo_met"] == "0.937500" and by_item["docs"]["rpo_met"] == "0.000000"


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def test_the_pdf_holds_the_vaults_and_figures(world: dict[str, Any], reader: Any) -> None:
    response = api_client_for(reader).get(URL, {**PERIOD, "format": "pdf"})
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == (
        'attachment; filename="holdfast-compliance-20260301-20260307.pdf"'
    )
    assert response.content.startswith(b"%PDF")
    text = pdf_text(response.content)
    for figure in ("alpha-vault", "beta-vault", "files", "docs", "51.79%", "93.75%", "40.97%",
                   "2026-03-05 10:00 UTC, 12.5 s", "immutability_enable by alice",
                   "Backups per day", "Stored bytes written per day"):  # fmt: skip
        assert figure in text, figure


@pytest.mark.parametrize(
    "query",
    [
        {"from": "yesterday", "to": "2026-03-07"},
        {"from": "2026-02-30", "to": "2026-03-07"},
        {"from": "2026-03-01", "to": "9999-12-31"},
        {"from": "2026-03-08", "to": "2026-03-01"},
        {"from": "2025-01-01", "to": "2026-03-01"},
        {"from": "2026-03-01"},
        {"period": "12"},
        {"tag": "env"},
        {"format": "xlsx"},
    ],
)
def test_bad_periods_answer_400(reader: Any, query: dict[str, str]) -> None:
    response = api_client_for(reader).get(URL, query)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "validation_error"


def test_an_unknown_vault_is_404_and_anonymous_callers_401(reader: Any) -> None:
    assert api_client_for(reader).get(URL, {"vault": "nope"}).status_code == 404
    assert Client().get(URL).status_code == 401


# --- the page --------------------------------------------------------------------------------


def _page(user: Any, **query: str) -> str:
    client = Client()
    client.force_login(user)
    response = client.get("/reports/", query)
    assert response.status_code == 200
    return response.content.decode()


def test_the_page_shows_the_figures_to_a_reader(world: dict[str, Any], reader: Any) -> None:
    page = _page(reader, period="custom", **PERIOD)
    assert "2026-03-01 00:00 to 2026-03-07 23:59 UTC, every vault" in page
    assert "40.97%" in page and "51.79%" in page and "93.75%" in page
    assert "2026-03-05 10:00 UTC" in page and "Enable immutability" in page
    assert 'id="report-data"' in page and "<script>" not in page  # CSP: no inline script
    assert "period=custom&amp;from=2026-03-01&amp;to=2026-03-07&amp;format=pdf" in page
    only = _page(reader, period="custom", vault="beta-vault", **PERIOD)
    assert "beta-vault" in only and "alpha-vault</a>" not in only
    for label in ('for="report-period"', 'for="report-from"', 'for="report-vault"'):
        assert label in page


def test_the_page_says_what_is_wrong_with_a_period(reader: Any) -> None:
    page = _page(reader, period="custom", **{"from": "2026-03-09", "to": "2026-03-01"})
    assert 'id="report-error"' in page and "start is after its end" in page
    assert "from: give both" in _page(reader, period="custom")
    assert "Last 30 days" in _page(reader)


def test_anonymous_visitors_go_to_the_login_page(db: None) -> None:
    response = Client().get("/reports/")
    assert response.status_code == 302 and "/login" in response["Location"]


# --- the weekly e-mail -------------------------------------------------------------------


def test_the_weekly_email_goes_once_a_week_with_the_pdf(
    world: dict[str, Any], settings: Any
) -> None:
    settings.HOLDFAST_REPORT_EMAILS = ["auditor@example.com", "ciso@example.com"]
    clock_module.set_now(datetime(2026, 3, 9, 6, 15, tzinfo=UTC))  # Monday: week 10 is over
    assert report_mail.last_week(clock_module.now())[0] == "2026-W10"
    assert report_email.apply().get() == "sent"
    clock_module.set_now(datetime(2026, 3, 11, 6, 15, tzinfo=UTC))  # Wednesday: same week
    assert report_email.apply().get() == "sent already"
    assert report_email.apply().get() == "sent already"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["auditor@example.com", "ciso@example.com"]
    assert message.subject == "Holdfast compliance report, week 2026-W10"
    name, content, mimetype = message.attachments[0]
    assert (name, mimetype) == ("holdfast-compliance-2026-W10.pdf", "application/pdf")
    text = pdf_text(content)
    assert "alpha-vault" in text and "2026-03-02 00:00 to 2026-03-08 23:59 UTC" in text
    record = AuditRecord.objects.get(operation="report_email")
    assert (record.target, record.after) == ("2026-W10", {"week": "2026-W10", "recipients": 2})
    clock_module.set_now(datetime(2026, 3, 16, 6, 15, tzinfo=UTC))  # the next Monday
    assert report_email.apply().get() == "sent" and len(mail.outbox) == 2


def test_no_recipients_is_off(db: None, settings: Any) -> None:
    settings.HOLDFAST_REPORT_EMAILS = []
    assert report_mail.send_weekly() == "off" and mail.outbox == []


@pytest.mark.django_db(transaction=True)
def test_two_beat_processes_at_once_send_one_email(settings: Any) -> None:
    settings.HOLDFAST_REPORT_EMAILS = ["auditor@example.com"]
    clock_module.set_now(datetime(2026, 3, 9, 6, 15, tzinfo=UTC))
    barrier = threading.Barrier(2)
    answers: list[str] = []

    def beat() -> None:
        try:
            barrier.wait()
            answers.append(report_mail.send_weekly())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    clock_module.set_now(None)
    assert sorted(answers) == ["sent", "sent already"]
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("window", [None, slice(0, 2)])
def test_outside_a_transaction_the_scans_run_side_by_side_on_one_snapshot(
    settings: Any, window: slice | None
) -> None:
    """Committed rows, no transaction open: the points' and the days' scans run on a second
    connection that imported the report's snapshot; the figures are the one-connection
    report's, to the microsecond."""
    world = build(make_user("alice", "backup_admin"))
    clock_module.set_now(None)
    settings.HOLDFAST_REPORT_PARALLEL = False
    alone = reports.compliance(start=START, end=END, window=window)
    settings.HOLDFAST_REPORT_PARALLEL = True
    with CaptureQueriesContext(connection) as main:
        both = reports.compliance(start=START, end=END, window=window)
    sql = [query["sql"] for query in main.captured_queries]
    assert any("pg_export_snapshot" in text for text in sql)
    assert not any("vaults_recoverypoint p\nWHERE TRUE" in text for text in sql)  # beside
    assert [_figures(v) for v in both.vaults] == [_figures(v) for v in alone.vaults]
    assert [(v.name, i) for v, i in both.items()] == [(v.name, i) for v, i in alone.items()]
    assert both.totals == alone.totals and both.totals.succeeded == 4
    assert (both.daily_backups, both.daily_growth) == (alone.daily_backups, alone.daily_growth)
    assert world["files"].name == "files"
