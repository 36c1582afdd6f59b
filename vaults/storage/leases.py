"""The lease protocol between writers and garbage collection, in one place.

A writer (a backup, or a rehydration importing a point) holds a lease while it works:

    leases/<point_id>/lease.json      the writer is alive (its heartbeat)
    leases/<point_id>/refs-<n>.json   chunk ids it relies on, named before it checks them

A garbage collection publishes a marker while it runs:

    gc/<run id>.json                  started_at and beat_at, refreshed every GC_HEARTBEAT s

GC never deletes a chunk a live lease names; a writer, before publishing its manifest, waits
for every GC marker it sees and re-checks the chunks it found already stored
(`WriteSession.settle`). docs/storage.md has the argument that the two never race, and what
happens when either side dies.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .backends import Backend, Retention
from .chunks import chunk_key
from .errors import ConcurrentGcConflict, ObjectNotFound, StorageError
from .manifest import check_point_id, manifest_key

DEFAULT_LEASE_TIMEOUT = 6 * 3600.0
DEFAULT_GC_TIMEOUT = 6 * 3600.0
# A running GC refreshes its marker this often; writers treat a marker not refreshed for
# DEFAULT_GC_STALE seconds as left by a GC that died, and a GC stops deleting before its own
# marker could look that old (see docs/storage.md, "A GC that dies").
GC_HEARTBEAT = 5.0
DEFAULT_GC_STALE = 30.0
# A writer or GC stops before this fraction of its timeout has passed without a heartbeat,
# so the other side never sees it as stale while it still acts.
SAFETY = 0.8


@dataclass(frozen=True)
class LeaseTimings:
    """How long a lease or a GC marker lives without a heartbeat, and how often a writer
    looks again at the markers it waits for."""

    lease_timeout: float = DEFAULT_LEASE_TIMEOUT
    gc_timeout: float = DEFAULT_GC_TIMEOUT
    gc_stale: float = DEFAULT_GC_STALE
    poll_interval: float = 0.2


def lease_prefix(point_id: str) -> str:
    return f"leases/{check_point_id(point_id)}/"


def lease_state(backend: Backend, point_id: str) -> float | None:
    """The latest heartbeat of a point's lease objects, or None without a lease."""
    latest = None
    for key in backend.list(lease_prefix(point_id)):
        try:
            at = float(json.loads(backend.get(key))["at"])
        except ObjectNotFound:
            continue
        except (ValueError, KeyError, TypeError):
            at = backend.mtime(key)
        latest = at if latest is None else max(latest, at)
    return latest


def read_leases(backend: Backend, now: float, lease_timeout: float) -> tuple[set[str], list[str]]:
    """Chunk ids named by live leases, and the lease prefixes that expired."""
    by_point: dict[str, list[str]] = {}
    for key in backend.list("leases/"):
        by_point.setdefault(key.split("/")[1], []).append(key)
    protected: set[str] = set()
    expired: list[str] = []
    for point_id, keys in by_point.items():
        latest = 0.0
        named: list[str] = []
        for key in keys:
            try:
                document = json.loads(backend.get(key))
            except ObjectNotFound:
                continue
            except ValueError:
                # A damaged lease object still protects: keep it alive by mtime.
                latest = max(latest, backend.mtime(key))
                continue
            latest = max(latest, float(document.get("at", 0.0)))
            named.extend(document.get("chunks", []))
        if now - latest > lease_timeout:
            expired.append(f"leases/{point_id}/")
        else:
            protected.update(named)
    return protected, expired


class GcMarker:
    """The marker of one running garbage collection; `beat` publishes or refreshes it."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.key = f"gc/{time.time_ns()}-{uuid.uuid4().hex[:8]}.json"
        self.started_at = time.time()

    def beat(self) -> float:
        """Write the marker's heartbeat: writers wait only for markers being refreshed.
        Returns the monotonic time of the beat."""
        body = {"started_at": self.started_at, "beat_at": time.time()}
        self.backend.put(self.key, json.dumps(body).encode())
        return time.monotonic()

    def remove(self) -> None:
        self.backend.delete(self.key)


def marker_done(backend: Backend, key: str, now: float, timings: LeaseTimings) -> bool:
    """A GC marker stops holding a writer once it is gone, or once its GC is evidently dead:
    not refreshed for ``gc_stale`` seconds (a live GC refreshes it every few seconds and
    stops deleting before it could look that old), or older than ``gc_timeout``."""
    try:
        marker = json.loads(backend.get(key))
    except ObjectNotFound:
        return True
    except ValueError:
        marker = {}
    try:
        started = float(marker.get("started_at", 0.0))
        beat = float(marker.get("beat_at", started))
    except (TypeError, ValueError, AttributeError):
        started = beat = 0.0
    return now - beat > timings.gc_stale or now - started > timings.gc_timeout


class WriteSession:
    """The lease of one writer (a backup or a rehydration) that will publish a manifest.

    The lease is how GC learns about chunks a writer relies on before its manifest exists;
    the module docstring says why the two never race.
    """

    def __init__(
        self,
        backend: Backend,
        point_id: str,
        kind: str,
        retention: Retention | None = None,
        *,
        timings: LeaseTimings,
    ) -> None:
        self.backend = backend
        self.timings = timings
        # The object lock every chunk and the manifest of this point get (None: no lock).
        self.retention = retention
        self.point_id = point_id
        self.kind = kind
        self.prefix = lease_prefix(point_id)
        self.started_at = time.time()
        self._last_beat = 0.0
        self._refs = 0
        self._open = False

    def open(self) -> None:
        if self.backend.exists(manifest_key(self.point_id)):
            raise StorageError(f"Recovery point {self.point_id!r} already exists in this store.")
        lease = lease_state(self.backend, self.point_id)
        if lease is not None and time.time() - lease < self.timings.lease_timeout:
            raise StorageError(f"Another writer is already creating point {self.point_id!r}.")
        self._open = True
        self._beat()

    def _put(self, key: str, document: dict[str, Any]) -> None:
        now = time.time()
        if self._last_beat and now - self._last_beat > self.timings.lease_timeout * SAFETY:
            raise StorageError(
                f"The lease of point {self.point_id!r} went {now - self._last_beat:.0f} s without"
                " a heartbeat, so garbage collection may have treated it as stale; retry."
            )
        document["at"] = now
        self.backend.put(key, json.dumps(document).encode())
        self._last_beat = now

    def _beat(self) -> None:
        self._put(
            self.prefix + "lease.json",
            {"point_id": self.point_id, "kind": self.kind, "started_at": self.started_at},
        )

    def heartbeat_if_due(self) -> None:
        if time.time() - self._last_beat > min(60.0, self.timings.lease_timeout * 0.1):
            self._beat()

    def record(self, chunk_ids: list[str]) -> None:
        """Durably name chunks in the lease; must precede checking whether they exist."""
        self._refs += 1
        self._put(f"{self.prefix}refs-{self._refs:06d}.json", {"chunks": chunk_ids})

    def settle(self, reused: Iterable[str]) -> None:
        """Make sure no GC that missed our lease deleted a chunk we found already stored.

        A GC that read the leases before we recorded a chunk had published its marker
        before that; we wait for every marker present now to go away, then re-check.
        """
        waiting = set(self.backend.list("gc/"))
        while waiting:
            now = time.time()
            for key in list(waiting):
                if marker_done(self.backend, key, now, self.timings):
                    waiting.discard(key)
            if waiting:
                self.heartbeat_if_due()
                time.sleep(self.timings.poll_interval)
        missing = [c for c in reused if not self.backend.exists(chunk_key(c))]
        if missing:
            raise ConcurrentGcConflict(
                f"A garbage collection deleted {len(missing)} chunk(s) this backup had reused"
                f" (e.g. {missing[0]}); point {self.point_id!r} was not written. Run the"
                " backup again."
            )

    def commit(self, manifest_bytes: bytes) -> None:
        now = time.time()
        if now - self._last_beat > self.timings.lease_timeout * SAFETY:
            raise StorageError(f"The lease of point {self.point_id!r} lapsed; retry.")
        self.backend.put(manifest_key(self.point_id), manifest_bytes, self.retention)
        self.release()

    def release(self) -> None:
        if not self._open:
            return
        self._open = False
        keys = list(self.backend.list(self.prefix))
        # lease.json last: until then the refs keep protecting what they name.
        for key in sorted(keys, key=lambda k: k.endswith("/lease.json")):
            self.backend.delete(key)
