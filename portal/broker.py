"""The embedded default's broker: kombu's filesystem transport, made safe for a second process.

kombu's own ``_put`` creates the message file and writes it afterwards, while ``_get`` in
another process (the worker) may rename and read the file in between, so it reads nothing
and the worker stops on a ``JSONDecodeError`` (seen with ``make run`` once beat sends a task a
minute). Here a message is written under a name readers ignore and renamed into place, so
a reader only ever sees whole messages. The same goes for an exchange's binding table in
the control folder: kombu creates the file, then locks and writes it, so a publisher reading
the table in between read "" (a ``JSONDecodeError`` on a loaded host); here a new table is
written aside and linked into place whole. ``portal/celery.py`` puts this transport behind
the ``filesystem://`` URL; with Redis (production) it is not used.
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

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:  # type: ignore[override]
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        if not file.exists():
            table = [[routing_key or "", pattern or "", queue or ""]]
            partial = file.with_name(f".{file.name}.{uuid.uuid4()}.partial")
            try:
                partial.write_bytes(str_to_bytes(dumps(table)))
                os.link(partial, file)  # whole, or not at all if another process was first
                return
            except FileExistsError:
                pass  # made meanwhile: add this binding to it below, under its lock
            except OSError as exc:
                raise ChannelError(f"Cannot open {file}") from exc
            finally:
                partial.unlink(missing_ok=True)
        super()._queue_bind(exchange, routing_key, pattern, queue)


class Transport(filesystem.Transport):
    Channel = Channel
