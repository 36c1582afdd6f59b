"""The site's frame (issue 15): words for every identifier, the error pages, the favicon, the
one-line 403 log, the region list, the two-factor QR code and `make run`'s port."""

from __future__ import annotations

import logging
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from guards.models import ResourceGuard
from portal.alerts import JOB_ALERTS, SECURITY_ALERTS
from portal.labels import LABELS, label
from portal.operations import OPERATIONS
from vaults.models import Job, Vault

ROOT = Path(__file__).resolve().parent.parent


def client_for(user: Any) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


KNOWN = sorted(
    {*OPERATIONS, *SECURITY_ALERTS, *JOB_ALERTS, *Job.Kind.values, *Job.Status.values}
    | set(ResourceGuard.Operation.values)
)


@pytest.mark.parametrize("identifier", KNOWN)
def test_every_known_identifier_has_a_hand_written_label(identifier: str) -> None:
    assert identifier in LABELS, f"add {identifier!r} to portal/labels.py"
    assert "_" not in LABELS[identifier]


def test_an_unknown_identifier_still_reads_as_words() -> None:
    assert label("brand_new_kind") == "Brand new kind"
    assert label("operation_refused") == "Operation refused by immutability or MUA"


@pytest.mark.django_db
def test_alerts_and_audit_show_words_not_identifiers(admin: Any, vault: Vault) -> None:
    from portal.alerts import raise_alert

    raise_alert("operation_refused", vault_name=vault.name, message="refused")
    client = client_for(admin)
    alerts = client.get("/alerts/").content.decode()
    assert "Operation refused by immutability or MUA" in alerts
    assert ">operation_refused<" not in alerts
    audit = client.get("/audit/").content.decode()
    assert ">Create a vault<" in audit and "<code>vault_create</code>" not in audit


@pytest.mark.django_db
def test_a_403_page_has_the_navigation_and_the_reason(reader: Any) -> None:
    response = client_for(reader).get("/users/")
    assert response.status_code == 403
    body = response.content.decode()
    assert 'id="sidenav"' in body and 'href="/vaults/"' in body
    assert "Your role does not allow you to see this page." in body
    assert "rita" in body and "Reader" in body


@pytest.mark.django_db
def test_a_404_page_has_the_navigation_and_the_reason(reader: Any) -> None:
    response = client_for(reader).get("/vaults/no-such-vault/")
    assert response.status_code == 404
    body = response.content.decode()
    assert 'id="sidenav"' in body and "Nothing at this address" in body


@pytest.mark.django_db
def test_the_500_page_renders_without_a_request() -> None:
    from django.template import loader

    page = loader.get_template("500.html").render()
    assert "Something went wrong on our side" in page and 'href="/vaults/"' in page


@pytest.mark.django_db
def test_a_403_logs_one_line_without_a_traceback(
    reader: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="django.request"):
        client_for(reader).get("/users/")
    forbidden = [r for r in caplog.records if getattr(r, "status_code", None) == 403]
    assert len(forbidden) == 1
    assert forbidden[0].exc_info is None


def test_django_records_are_printed_once() -> None:
    # Django's own configuration gives "django" a console handler; it must not add to the
    # root's, or every record (and traceback) is printed twice.
    assert logging.getLogger("django").handlers == []


@pytest.mark.django_db
def test_favicon_answers(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"].endswith("favicon.svg")
    assert (ROOT / "static" / "favicon.svg").read_text().startswith("<svg")


@pytest.mark.django_db
def test_the_navs_reports_item_leads_to_the_reports_page(admin: Any) -> None:
    page = client_for(admin).get("/vaults/").content.decode()
    assert '<a href="/reports/">Reports</a>' in page
    assert client_for(admin).get("/reports/").status_code == 200
    assert 'aria-controls="sidenav"' in page and 'aria-expanded="false"' in page


@pytest.mark.django_db
def test_region_is_chosen_from_a_list_or_typed_as_other(admin: Any, settings: Any) -> None:
    settings.HOLDFAST_REGIONS = ["westeurope", "on-premises"]
    client = client_for(admin)
    page = client.get("/vaults/new/").content.decode()
    assert '<option value="westeurope">westeurope</option>' in page
    assert '<option value="other">Other…</option>' in page
    client.post("/vaults/new/", {"name": "listed", "kind": "backup", "region": "westeurope"})
    assert Vault.objects.get(name="listed").region == "westeurope"
    missing = client.post(
        "/vaults/new/", {"name": "other-one", "kind": "backup", "region": "other"}
    )
    assert "Type the region, or choose one from the list." in missing.content.decode()
    assert not Vault.objects.filter(name="other-one").exists()
    client.post(
        "/vaults/new/",
        {"name": "other-one", "kind": "backup", "region": "other", "region_other": "basement"},
    )
    assert Vault.objects.get(name="other-one").region == "basement"


@pytest.mark.django_db
def test_two_factor_enrolment_shows_a_qr_code(security_admin: Any) -> None:
    page = client_for(security_admin).get("/account/two-factor/").content.decode()
    match = re.search(r'<img class="qr" id="totp-qr" src="(data:image/svg\+xml[^"]+)"', page)
    assert match, "no QR code"
    assert 'style="' not in page


def test_make_run_honours_port() -> None:
    out = subprocess.run(
        ["make", "-n", "run", "PORT=8123"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "honcho -f Procfile.dev start --port 8123" in out
    procfile = (ROOT / "Procfile.dev").read_text()
    assert "runserver 127.0.0.1:${PORT:-8000}" in procfile
    assert "--pool threads" in procfile  # a clean Ctrl-C: no forked pool child to kill


@pytest.mark.django_db
def test_an_htmx_request_gets_the_refusal_alone_not_a_page_in_the_page(reader: Any) -> None:
    response = client_for(reader).get("/users/", headers={"HX-Request": "true"})
    assert response.status_code == 403
    body = response.content.decode()
    assert "Your role does not allow you to see this page." in body
    assert "<html" not in body and 'id="sidenav"' not in body
