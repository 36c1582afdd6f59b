"""The embedded default's broker: kombu's filesystem transport, made safe for a second process.

kombu's own ``_put`` creates the message file and writes it afterwards, while ``_get`` in
another process (the worker) may rename and read the file in between, so it reads nothing
and the worker stops on a ``JSONDecodeError`` (seen with ``make run`` once beat sends a task a
minute). Here a message is written under a name readers ignore and renamed into place, so
a reader only ever sees whole messages. ``portal/celery.py`` puts this transport behind the
``filesystem://`` URL; with Redis (production) it is not used.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot: the reader's "<stamp>_<uuid>.<queue>.msg" test never matches it.
        partial = os.path.join(self.data_folder_out, f".{name}.partial")
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
