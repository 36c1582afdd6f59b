"""The Celery application; tasks live in each app's ``tasks.py``.

Each worker runs on a host (``HOLDFAST_WORKER_HOST``, default the machine's name, SPEC 3.13)
and consumes its host's queue, ``host.<name>``, besides the shared one (the default, or the
queues given with ``-Q``): ``celery -A portal worker`` on fs01 takes fs01's jobs.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Any

from celery import Celery
from celery.signals import celeryd_after_setup
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
# The embedded default's broker publishes whole messages only (portal/broker.py).
TRANSPORT_ALIASES["filesystem"] = "portal.broker:Transport"

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# A host's name is part of its queue's name and of sentences: a DNS-like label.
HOST_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
HOST_QUEUE_PREFIX = "host."


def host_queue(name: str) -> str:
    return f"{HOST_QUEUE_PREFIX}{name}"


def worker_host() -> str:
    """The host this process runs on, as workers announce it and items name it."""
    name = os.environ.get("HOLDFAST_WORKER_HOST", "").strip() or socket.gethostname()
    if not re.match(HOST_NAME_PATTERN, name):
        raise RuntimeError(
            f"HOLDFAST_WORKER_HOST {name!r} is not a host name: use 1 to 100 letters, digits, "
            "dots, hyphens or underscores, starting with a letter or digit."
        )
    return name


@celeryd_after_setup.connect
def consume_host_queue(sender: str, instance: Any, **kwargs: Any) -> None:
    """After ``-Q`` was applied: add this host's own queue to what the worker consumes."""
    instance.app.amqp.queues.select_add(host_queue(worker_host()))
