"""The embedded default's broker (portal/broker.py): a reader never sees half a message."""

from __future__ import annotations

import threading
from pathlib import Path

from kombu import Connection

import portal.celery  # noqa: F401  (puts the safe transport behind filesystem://)


def test_a_consumer_racing_the_producer_reads_every_message_whole(tmp_path: Path) -> None:
    options = {
        "data_folder_in": str(tmp_path),
        "data_folder_out": str(tmp_path),
        "control_folder": str(tmp_path / "control"),
    }
    payload = {"body": "x" * 200_000}
    sent = 300
    received: list[dict] = []
    errors: list[BaseException] = []

    def consume() -> None:
        with Connection("filesystem://", transport_options=options) as connection:
            queue = connection.SimpleQueue("race")
            try:
                while len(received) < sent:
                    received.append(queue.get(timeout=60).payload)  # generous: a loaded host
            except BaseException as exc:  # the original transport fails here: JSONDecodeError
                errors.append(exc)

    # The queue and its binding exist before the race starts. Two connections in one process
    # share kombu's in-memory broker state: a binding the reader's thread declared counts as
    # made before its table is on disk, and a publish routed in between finds no queue and
    # is dropped (lost messages, a failing test). Worker and web are separate processes,
    # each binding its own way; here the race under test is the message files'.
    with Connection("filesystem://", transport_options=options) as connection:
        connection.SimpleQueue("race").close()
    reader = threading.Thread(target=consume)
    reader.start()
    with Connection("filesystem://", transport_options=options) as connection:
        assert type(connection.transport).__module__ == "portal.broker"
        queue = connection.SimpleQueue("race")
        for _ in range(sent):
            queue.put(payload)
    reader.join(180)
    assert not errors, errors[0]
    assert len(received) == sent and all(message == payload for message in received)
