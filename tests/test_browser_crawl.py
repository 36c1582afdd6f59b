"""Every page a person reaches by links from the Backup center, as each role (issue 15): no
console error, no CSP violation, no serious or critical accessibility violation (axe-core),
and screenshots of the main pages at 1,440 and 390 px in var/screenshots/ (not committed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.browser_checks import build_world, open_page, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROLES = {
    "reader": "rita",
    "operator": "oscar",
    "backup_admin": "alice",
    "security_admin": "sam",
    "superuser": "root-admin",
}
PAGES_PER_ROLE = 60
# Not pages to look at: downloads, exports, the Django admin, sign-out, JSON API answers.
SKIP = re.compile(
    r"^/(admin/|static/|api/(?!docs/)|accounts/logout)|format=csv|download|\.(csv|zip|tar|json)$"
)


def pattern(url: str) -> str:
    """One page per shape: numbers and the vaults' names are the same page to a crawler."""
    parts = urlsplit(url)
    path = re.sub(r"/\d+(?=/|$)", "/N", parts.path)
    path = re.sub(r"(plain|guarded|immutable)-vault", "V", path)
    keys = sorted({key for key, _ in parse_qsl(parts.query) if key != "page"})
    return path + ("?" + "&".join(keys) if keys else "")


def crawl(watch: Any, role: str) -> tuple[list[str], dict[str, list[str]]]:
    page = watch.page
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(page.url))
    queue, seen, visited = ["/"], {pattern("/")}, []
    problems: dict[str, list[str]] = {}
    while queue and len(visited) < PAGES_PER_ROLE:
        path = queue.pop(0)
        response = page.goto(path)
        page.wait_for_load_state("networkidle")
        visited.append(path)
        found = []
        if response is not None and response.status >= 400:
            found.append(f"HTTP {response.status}")
        found += watch.errors
        watch.errors.clear()
        found += [f"CSP: {v}" for v in watch.csp_violations()]
        if not path.startswith("/api/docs/"):  # Swagger UI's own markup is not ours to fix
            found += [f"axe: {v}" for v in watch.axe_violations()]
        if found:
            problems[path] = found
        hrefs = page.eval_on_selector_all(
            "a[href]:not([download])", "els => els.map((a) => a.href)"
        )
        for href in hrefs:
            if not href.startswith(origin):
                continue
            local = href[len(origin) :].split("#")[0] or "/"
            if SKIP.search(local) or pattern(local) in seen:
                continue
            seen.add(pattern(local))
            queue.append(local)
    return visited, problems


@pytest.mark.parametrize("role", list(ROLES))
def test_every_linked_page_is_clean_for_each_role(
    live_server: Any, browser: Any, tmp_path: Path, settings: Any, role: str
) -> None:
    build_world(tmp_path, settings)
    watch = open_page(browser, live_server.url, ROLES[role])
    visited, problems = crawl(watch, role)
    print(f"\n{role}: {len(visited)} pages")
    assert len(visited) >= 15, visited
    assert problems == {}, "\n".join(f"{p}: {found}" for p, found in problems.items())


MAIN_PAGES = {
    "center": "/",
    "vaults": "/vaults/",
    "vault-overview": "/vaults/plain-vault/",
    "vault-immutability": "/vaults/immutable-vault/immutability/",
    "vault-security": "/vaults/guarded-vault/security/",
    "vault-mua": "/vaults/guarded-vault/mua/",
    "vault-items": "/vaults/plain-vault/items/",
    "vault-policies": "/vaults/plain-vault/policies/",
    "jobs": "/jobs/",
    "alerts": "/alerts/",
    "approvals": "/approvals/",
    "audit": "/audit/",
    "guard": "/resource-guards/guard-one/",
    "two-factor": "/account/two-factor/",
    "create-vault": "/vaults/new/",
}


@pytest.mark.parametrize("width", [1440, 390])
def test_screenshots_of_the_main_pages(
    live_server: Any, browser: Any, tmp_path: Path, settings: Any, width: int
) -> None:
    world = build_world(tmp_path, settings)
    pages = {**MAIN_PAGES, "approval": f"/approvals/{world['lock'].pk}/"}
    watch = open_page(browser, live_server.url, "sam" if width == 390 else "alice", width=width)
    overflows = {}
    for name, path in pages.items():
        watch.page.goto(path)
        watch.page.wait_for_load_state("networkidle")
        screenshot(watch.page, f"{name}-{width}")
        # Nothing wider than the screen: the page never scrolls sideways (tables scroll in
        # their card instead).
        overflow = watch.page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if overflow > 1:
            overflows[path] = overflow
    assert overflows == {}, f"pages wider than {width}px: {overflows}"
    assert watch.errors == []
