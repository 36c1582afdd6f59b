"""Alerts (SPEC 3.8): raised by the gate, counted not duplicated, delivered and signed."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from django.core import mail
from django.test import Client

from portal import services
from portal.alerts import raise_alert
from portal.delivery import deliver_alert_webhook
from portal.gate import DomainError
from portal.models import Alert
from tests.factories import make_vault
from vaults import services as vault_services

pytestmark = pytest.mark.django_db


class Receiver:
    """A real HTTP server on loopback that fails the first ``failures`` requests."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                failing = len(receiver.requests) <= receiver.failures
                self.send_response(503 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(failures=2)
    yield server
    server.close()


def test_refusal_raises_an_alert_and_a_repeat_is_counted(admin: Any) -> None:
    vault = make_vault(admin, immutability="locked")
    for _ in range(3):
        with pytest.raises(DomainError):
            vault_services.immutability_set(actor=admin, vault=vault, state="disabled")
    alert = Alert.objects.get(kind="operation_refused")
    assert (alert.count, alert.category, alert.vault_name) == (3, "security", vault.name)


def test_resolved_alert_is_not_reopened_by_a_repeat(admin: Any, security_admin: Any) -> None:
    first = raise_alert("backup_failed", vault_name="v", target="item:a", message="boom")
    services.alert_resolve(actor=security_admin, alert=first)
    second = raise_alert("backup_failed", vault_name="v", target="item:a", message="boom")
    assert second.pk != first.pk and second.count == 1


def test_readers_cannot_acknowledge(reader: Any, operator: Any) -> None:
    alert = raise_alert("restore_failed", vault_name="v", message="x")
    with pytest.raises(DomainError) as refusal:
        services.alert_acknowledge(actor=reader, alert=alert)
    assert refusal.value.code == "permission_denied"
    services.alert_acknowledge(actor=operator, alert=alert)
    alert.refresh_from_db()
    assert (alert.status, alert.acknowledged_by) == ("acknowledged", operator)


def test_webhook_is_signed_and_retried_after_failures(settings: Any, receiver: Receiver) -> None:
    settings.HOLDFAST_ALERT_WEBHOOK_URL = receiver.url
    settings.HOLDFAST_ALERT_WEBHOOK_SECRET = "s3cret"
    alert = raise_alert("immutability_disabled", vault_name="v", message="disabled")
    # apply() runs the task in this process; its retries run at once (no countdown), so the
    # two failures and the success happen against the real server.
    deliver_alert_webhook.apply(args=[alert.pk])
    assert len(receiver.requests) == 3
    headers, body = receiver.requests[-1]
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Holdfast-Signature"] == expected
    assert json.loads(body)["kind"] == "immutability_disabled"
    assert json.loads(body)["id"] == alert.pk


def test_email_goes_out_once_for_a_repeating_alert(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.HOLDFAST_ALERT_EMAILS = ["secops@example.com"]
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from portal.celery import app

    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            raise_alert("mua_removed", vault_name="v", message="guard removed")
        with django_capture_on_commit_callbacks(execute=True):
            raise_alert("mua_removed", vault_name="v", message="guard removed")
    finally:
        app.conf.task_always_eager = False
    assert len(mail.outbox) == 1
    assert "mua removed on v" in mail.outbox[0].subject
    assert mail.outbox[0].to == ["secops@example.com"]


def test_alerts_page_filters_and_actions(admin: Any, operator: Any) -> None:
    raise_alert("backup_failed", vault_name="v1", message="disk full")
    raise_alert("soft_delete_disabled", vault_name="v2", message="off")
    client = Client()
    client.force_login(operator)
    page = client.get("/alerts/?category=job").content.decode()
    assert "disk full" in page and ">off<" not in page
    alert = Alert.objects.get(kind="backup_failed")
    client.post(f"/alerts/{alert.pk}/resolve/")
    alert.refresh_from_db()
    assert alert.status == "resolved"
    assert 'aria-label="1 open"' in client.get("/alerts/").content.decode()


def test_job_alerts_of_a_muted_vault_are_listed_but_not_delivered(
    admin: Any, reader: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.HOLDFAST_ALERT_WEBHOOK_URL = "http://127.0.0.1:9/never"
    vault = make_vault(admin, name="quiet")
    client = Client()
    client.force_login(reader)
    assert client.post("/vaults/quiet/job-alerts/", {"muted": "1"}).status_code == 403
    client.force_login(admin)
    client.post("/vaults/quiet/job-alerts/", {"muted": "1"})
    vault.refresh_from_db()
    assert vault.mute_job_alerts
    with django_capture_on_commit_callbacks() as job_callbacks:
        raise_alert("backup_failed", vault_name="quiet", message="disk full")
    assert job_callbacks == [], "a muted job alert is not delivered"
    assert Alert.objects.filter(kind="backup_failed", vault_name="quiet").exists()
    with django_capture_on_commit_callbacks() as security_callbacks:
        raise_alert("immutability_disabled", vault_name="quiet", message="off")
    assert len(security_callbacks) == 1, "security alerts cannot be muted"
