"""Locust users for ``bench/load.py`` (run it, not this file: it sets up the server first).

Two kinds of user, mostly reading:

- ``Browser`` (weight 7) signs in through the login form and browses: the Backup center with
  filters, sorts and pages (some as htmx partial requests, as the filter form sends them),
  vault pages and their blades, protected items, jobs, the dashboard, and the vault list API
  with its session.
- ``ApiAdmin`` (weight 3), a backup admin's script: gets a token from
  ``/api/v1/auth/token/``, reads vaults, items, points and jobs, and runs operations: create a
  vault, lengthen its soft delete, enable its immutability, request an on-demand backup.

Accounts, vault and item names come from the JSON file named by ``LOAD_FIXTURE``. Every
request's name, time and outcome is written as JSON lines to ``LOAD_SAMPLES`` when locust
quits, for exact percentiles (locust's own are rounded).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import time
import uuid
from typing import Any

from locust import FastHttpUser, between, events, task

FIXTURE: dict[str, Any] = json.loads(open(os.environ["LOAD_FIXTURE"]).read())  # noqa: SIM115
SAMPLES: list[tuple[str, float, float, bool]] = []  # name, end time, milliseconds, ok
_readers = itertools.cycle(FIXTURE["readers"])
_admins = itertools.cycle(FIXTURE["admins"])
# Think time between a user's actions, in seconds: "low,high" (bench/load.py --think).
THINK = [float(x) for x in os.environ.get("LOAD_THINK", "1,5").split(",")]
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')

PORTFOLIO_QUERIES = [
    "",
    "?immutability=enabled",
    "?immutability=locked&mua=true",
    "?soft_delete=always_on&sort=-storage",
    "?security_level=poor",
    "?kind=backup&region=westeurope",
    "?tag=env%3Dprod&sort=-items",
    "?sort=-last_backup",
    "?sort=name&page=2",
    "?sort=-storage&page=3",
]
ITEM_QUERIES = ["", "?protection_state=protected", "?rpo=missed", "?sort=-last_backup", "?page=2"]
BLADES = ["properties", "immutability", "security", "mua", "policies", "items", "jobs"]


@events.request.add_listener
def _record(name: str, response_time: float, exception: Any, **kwargs: Any) -> None:
    SAMPLES.append((name, time.time(), response_time, exception is None))


@events.quitting.add_listener
def _dump(**kwargs: Any) -> None:
    with open(os.environ["LOAD_SAMPLES"], "w") as out:
        for name, ended, milliseconds, ok in SAMPLES:
            out.write(json.dumps([name, ended, milliseconds, ok]) + "\n")


class Browser(FastHttpUser):
    weight = 7
    wait_time = between(THINK[0], THINK[1])

    def on_start(self) -> None:
        username = next(_readers)
        form = self.client.get("/accounts/login/", name="sign-in: form")
        token = CSRF.search(form.text or "")
        with self.client.post(
            "/accounts/login/",
            data={
                "csrfmiddlewaretoken": token.group(1) if token else "",
                "username": username,
                "password": FIXTURE["password"],
            },
            headers={"Referer": f"{self.host}/accounts/login/"},
            allow_redirects=False,
            name="sign-in: submit",
            catch_response=True,
        ) as answer:
            if answer.status_code != 302:
                answer.failure(f"sign-in answered {answer.status_code}")

    @task(6)
    def portfolio(self) -> None:
        query = random.choice(PORTFOLIO_QUERIES)
        if query and random.random() < 0.5:  # the filter form swaps #results with htmx
            self.client.get(
                f"/backup-center/{query}",
                headers={"HX-Request": "true", "HX-Target": "results"},
                name="page: portfolio (htmx)",
            )
        else:
            name = "page: portfolio" if not query else "page: portfolio, filtered"
            self.client.get(f"/backup-center/{query}", name=name)

    @task(3)
    def vault(self) -> None:
        vault = random.choice(FIXTURE["vaults"])
        self.client.get(f"/vaults/{vault}/", name="page: vault")
        blade = random.choice(BLADES)
        self.client.get(f"/vaults/{vault}/{blade}/", name="page: vault blade")

    @task(2)
    def items(self) -> None:
        self.client.get(f"/items/{random.choice(ITEM_QUERIES)}", name="page: items")

    @task(1)
    def jobs(self) -> None:
        self.client.get("/jobs/", name="page: jobs")

    @task(1)
    def dashboard(self) -> None:
        self.client.get("/dashboard/", name="page: dashboard")

    @task(2)
    def vault_list_api(self) -> None:
        page = random.choice(["", "?page=2", "?immutability=enabled", "?security_level=good"])
        self.client.get(f"/api/v1/vaults/{page}", name="api: vault list")


class ApiAdmin(FastHttpUser):
    weight = 3
    wait_time = between(THINK[0], THINK[1])

    def on_start(self) -> None:
        self.mine: dict[str, dict[str, Any]] = {}  # vaults this user created
        self.auth: dict[str, str] = {}
        with self.client.post(
            "/api/v1/auth/token/",
            json={"username": next(_admins), "password": FIXTURE["password"]},
            name="sign-in: token",
            catch_response=True,
        ) as answer:
            token = (answer.json() or {}).get("token") if answer.status_code == 200 else None
            if not token:
                answer.failure(f"token answered {answer.status_code}")
                return
        self.auth = {"Authorization": f"Token {token}"}

    def _get(self, path: str, name: str) -> None:
        self.client.get(path, headers=self.auth, name=name)

    @task(4)
    def vault_list(self) -> None:
        query = random.choice(["", "?page=2", "?page=4", "?kind=archive", "?tag=env%3Dprod"])
        self._get(f"/api/v1/vaults/{query}", "api: vault list")

    @task(3)
    def vault_detail(self) -> None:
        self._get(f"/api/v1/vaults/{random.choice(FIXTURE['vaults'])}/", "api: vault detail")

    @task(2)
    def items_and_points(self) -> None:
        vault, item = random.choice(FIXTURE["items"])
        self._get(f"/api/v1/vaults/{vault}/items/", "api: item list")
        self._get(f"/api/v1/vaults/{vault}/items/{item}/recovery-points/", "api: point list")

    @task(1)
    def job_list(self) -> None:
        self._get(f"/api/v1/jobs/?vault={random.choice(FIXTURE['ops'])}", "api: job list")

    @task(2)
    def create_vault(self) -> None:
        name = f"load-{uuid.uuid4().hex[:12]}"
        answer = self.client.post(
            "/api/v1/vaults/",
            json={"name": name, "kind": random.choice(["backup", "recovery_services"]),
                  "region": random.choice(["westeurope", "eastus", "northeurope"]),
                  "tags": {"env": "load"}},
            headers=self.auth,
            name="api: create vault",
        )  # fmt: skip
        if answer.status_code == 201:
            self.mine[name] = {"retention": 14, "immutable": False}

    @task(2)
    def lengthen_soft_delete(self) -> None:
        open_ones = [n for n, v in self.mine.items() if v["retention"] < 180]
        if not open_ones:
            return
        name = random.choice(open_ones)
        days = min(180, self.mine[name]["retention"] + random.randint(1, 30))
        answer = self.client.patch(
            f"/api/v1/vaults/{name}/soft-delete/",
            json={"retention_days": days},
            headers=self.auth,
            name="api: change soft delete",
        )
        if answer.status_code == 200:
            self.mine[name]["retention"] = days

    @task(1)
    def enable_immutability(self) -> None:
        mutable = [n for n, v in self.mine.items() if not v["immutable"]]
        if not mutable:
            return
        name = random.choice(mutable)
        answer = self.client.post(
            f"/api/v1/vaults/{name}/immutability/",
            json={"state": "enabled"},
            headers=self.auth,
            name="api: enable immutability",
        )
        if answer.status_code == 200:
            self.mine[name]["immutable"] = True

    @task(1)
    def backup(self) -> None:
        vault = random.choice(FIXTURE["ops"])
        self.client.post(
            f"/api/v1/vaults/{vault}/items/docs/backup/",
            json={},
            headers=self.auth,
            name="api: request backup",
        )
