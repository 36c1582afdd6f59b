"""What the browser tests check on every page: console errors, CSP violations (a
``securitypolicyviolation`` listener installed before any page script), and axe-core's
serious or critical violations; plus a small world with something on every page."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from guards import services as guard_services
from policies import services as policy_services
from portal import services as portal_services
from portal.alerts import raise_alert
from tests.conftest import PASSWORD, make_user
from tests.factories import make_vault
from vaults import services
from vaults.jobs import runner
from vaults.jobs.requests import backup_request
from vaults.models import Job

AXE = Path(__file__).parent / "vendor" / "axe-4.14.1.min.js"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"

# Kept in the page's own window, read after each load (a new document starts a new list).
CSP_LISTENER = """
window.__hf_csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__hf_csp.push(e.violatedDirective + " " + (e.blockedURI || "inline") + " at " +
    (e.sourceFile || document.location.pathname) + ":" + e.lineNumber);
});
"""

AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => v.id + " (" + v.impact + "): " +
         v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", "));
}"""


class PageWatch:
    """Console errors and page errors of one browser page, from the moment it opens."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} ({self.page.url})")

    def csp_violations(self) -> list[str]:
        return list(self.page.evaluate("() => window.__hf_csp || []"))

    def axe_violations(self) -> list[str]:
        # Evaluated through the browser's devtools channel rather than a <script> tag: the
        # site's CSP would (rightly) refuse an inline script, and report it as a violation.
        if not self.page.evaluate("() => typeof window.axe !== 'undefined'"):
            self.page.evaluate(AXE.read_text() + "\n;0")
        return list(self.page.evaluate(AXE_RUN))


def open_page(browser: Any, base_url: str, username: str, *, width: int = 1440) -> PageWatch:
    context = browser.new_context(
        base_url=base_url, viewport={"width": width, "height": 900 if width > 500 else 844}
    )
    context.add_init_script(CSP_LISTENER)
    page = context.new_page()
    watch = PageWatch(page)
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    return watch


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def build_world(tmp_path: Path, settings: Any) -> dict[str, Any]:
    """Every role, a plain, a guarded and an immutable vault with a policy, an item with a
    real backup (run here, without a worker) and a failed job, alerts, a pending lock and a
    pending elevation."""
    settings.HOLDFAST_STORAGE_ROOT = tmp_path / "storage"
    settings.HOLDFAST_RESTORE_ROOTS = [tmp_path / "restores"]
    settings.HOLDFAST_TASK_QUEUE = f"holdfast-test-crawl-{uuid.uuid4().hex[:8]}"
    (tmp_path / "restores").mkdir()
    users = {
        "reader": make_user("rita", "reader"),
        "operator": make_user("oscar", "operator"),
        "backup_admin": make_user("alice", "backup_admin"),
        "security_admin": make_user("sam", "security_admin"),
        "superuser": make_user("root-admin", "backup_admin", is_superuser=True),
    }
    admin, security = users["backup_admin"], users["security_admin"]
    make_user("sofia", "security_admin")
    plain = make_vault(admin, name="plain-vault")
    guarded = make_vault(admin, name="guarded-vault")
    immutable = make_vault(admin, name="immutable-vault")
    guard = guard_services.guard_create(actor=security, name="guard-one")
    services.vault_guard_set(actor=admin, vault=guarded, guard=guard)
    services.immutability_set(actor=admin, vault=immutable, state="enabled")
    now = timezone.now()
    for vault in (plain, guarded, immutable):
        policy = policy_services.policy_create(
            actor=admin, vault=vault, name="daily", daily_days=30
        )
        source = tmp_path / "sources" / vault.name
        (source / "docs").mkdir(parents=True)
        (source / "docs" / "report.txt").write_text("quarterly numbers\n" * 100)
        (source / "notes.md").write_text("# notes\n")
        item = services.item_protect(
            actor=admin,
            vault=vault,
            name=f"{vault.name}-docs",
            source_path=str(source),
            policy=policy,
        )
        job = backup_request(actor=admin, item=item)
        runner.job_run(job_id=job.pk)
        Job.objects.create(
            kind="backup",
            status="failed",
            vault=vault,
            item=item,
            created_at=now - timedelta(minutes=10),
            started_at=now - timedelta(minutes=10),
            ended_at=now - timedelta(minutes=9),
            error="The source directory vanished.",
        )
    with transaction.atomic():
        raise_alert("backup_failed", vault_name=plain.name, target="item:x", message="Failed.")
        raise_alert("operation_refused", vault_name=guarded.name, message="Refused by MUA.")
    lock = services.immutability_lock_request(
        actor=admin, vault=immutable, confirmation=immutable.name
    )
    elevation = guard_services.elevation_request(
        actor=admin, guard=guard, justification="Tidy old points", duration_minutes=60
    )
    return {
        "users": users,
        "guard": guard,
        "lock": lock,
        "elevation": elevation,
        "vaults": (plain, guarded, immutable),
        "portal": portal_services,
    }
