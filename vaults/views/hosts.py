"""The Hosts page (SPEC 3.13): every host a worker announced, online or offline, with its
running jobs and the items read on it."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal import clock
from portal.http import require_capability

from ..hosts import ONLINE_WINDOW, wait_limit
from ..selectors import hosts_for_user


def host_list(request: HttpRequest) -> HttpResponse:
    require_capability(request, "view")
    now = clock.now()
    page = Paginator(hosts_for_user(request.user), 100).get_page(request.GET.get("page"))
    rows = [(host, host.is_online(now)) for host in page]
    context = {
        "page": page,
        "rows": rows,
        "online_minutes": int(ONLINE_WINDOW.total_seconds() // 60),
        "wait_minutes": f"{wait_limit().total_seconds() / 60:g}",
        "query": "",
    }
    return render(request, "vaults/hosts.html", context)
