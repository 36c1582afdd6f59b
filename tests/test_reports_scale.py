"""The compliance report at scale (issue 18, deliverable 5): what ``seed_scale`` writes for it,
and a query count that does not grow with the portfolio (the report aggregates in SQL; the
timing at 10,000 vaults is ``make bench-reports``'s)."""

from __future__ import annotations

import importlib.util
import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal import audit
from portal.models import AuditRecord
from tests.conftest import api_client_for
from vaults.models import Job, ProtectedItem, RecoveryPoint, Vault

pytestmark = pytest.mark.django_db

needs_reports = pytest.mark.skipif(
    importlib.util.find_spec("vaults.reports") is None,
    reason="the reports service (vaults/reports.py) is not on this branch yet",
)


def _seed(vaults: int, *, days: int = 90, history: int = 3, more: bool = False) -> str:
    out = io.StringIO()
    call_command(
        "seed_scale", vaults=vaults, items=vaults * 4, points=vaults * 20, days=days,
        history=history, yes_i_know=more, stdout=out,
    )  # fmt: skip
    return out.getvalue()


def test_seed_scale_writes_history_drills_and_chained_changes_within_the_span(
    clock: Any,
) -> None:
    now = clock.now()
    _seed(200, days=30, history=4)
    start = now - timedelta(days=30)
    items = ProtectedItem.objects.count()
    history = Job.objects.filter(kind="backup", slot__isnull=True, created_at__lt=start)
    assert not history.exists()
    backups = Job.objects.filter(kind="backup")
    newest = ProtectedItem.objects.filter(protection_state="protected").count()
    assert backups.count() == items * 4 + newest
    assert backups.filter(status="failed").exists()
    assert backups.filter(status="completed").count() > backups.count() / 2
    stopped = ProtectedItem.objects.exclude(protection_state="protected")
    assert not backups.filter(item__in=stopped, created_at__gt=now - timedelta(days=3)).exists()
    # Points stay within the span except archived ones; about one in seven has drilled.
    assert not RecoveryPoint.objects.exclude(tier="vault_archive").filter(created_at__lt=start)
    drilled = RecoveryPoint.objects.filter(drill__isnull=False)
    assert RecoveryPoint.objects.count() / 10 < drilled.count() < RecoveryPoint.objects.count() / 3
    for point in drilled[:50]:
        assert set(point.drill) >= {"status", "at", "files", "bytes", "seconds"}
        assert point.drill["status"] in {"passed", "failed"}
    assert drilled.filter(drill__status="failed").exists()
    # Two of the 200 vaults changed a setting in the span, audited; the chain still verifies.
    changes = AuditRecord.objects.filter(details__synthetic="seed_scale")
    assert changes.count() == 2
    for record in changes:
        vault = Vault.objects.get(name=record.vault_name)
        assert start < record.at < now
        assert record.after == vault.audit_state()
        assert record.before != record.after
        if record.operation.startswith("immutability"):
            assert vault.immutability_changed_at == record.at
    status = audit.verify(remote=False)
    assert status.chain_ok, status.reason
    assert status.checked == AuditRecord.objects.count()


def test_seed_scale_refuses_a_span_out_of_range(db: None) -> None:
    with pytest.raises(CommandError, match="--days"):
        call_command("seed_scale", vaults=1, items=1, points=1, days=0)
    with pytest.raises(CommandError, match="--history"):
        call_command("seed_scale", vaults=1, items=1, points=1, history=-1)
    assert not Vault.objects.exists()


def _urls(clock: Any) -> list[str]:
    today = clock.now().date()
    api = f"/api/v1/reports/compliance/?from={today - timedelta(days=90)}&to={today}"
    return ["/reports/?period=90", api]


@needs_reports
def test_the_report_runs_the_same_queries_at_3_and_12_vaults(
    reader: Any, client: Client, clock: Any
) -> None:
    client.force_login(reader)
    api = api_client_for(reader)
    page, json_url = _urls(clock)
    _seed(3)

    def counts() -> list[int]:
        found = []
        for get, url in ((client.get, page), (api.get, json_url)):
            get(url)  # warm the per-process caches
            with CaptureQueriesContext(connection) as queries:
                response = get(url)
            assert response.status_code == 200, (url, response.status_code)
            found.append(len(queries))
        return found

    small = counts()
    _seed(9, more=True)
    assert Vault.objects.count() == 12
    assert counts() == small
