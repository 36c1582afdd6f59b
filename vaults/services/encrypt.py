"""A vault's objects from before encryption, sealed in place (SPEC 3.11): ``manage.py keys
encrypt-vault NAME``.

A vault that existed when encryption came (``Vault.plaintext_objects``) may hold plaintext
objects: chunks named by their unkeyed BLAKE3 id, plain JSON manifests, archive packs and
indexes, hold notes. Its stores read them (`SealedBackend.legacy_plaintext`) but never
write one. This converts them:

- Each point's manifest (both tiers) whose object is plaintext or names a plaintext chunk:
  every plaintext chunk is read and hash-checked under its old id, written sealed under its
  keyed id, and the manifest rewritten sealed with the new ids (`Manifest.rekeyed`), each
  object locked as long as the manifest it replaces. The standard tier writes under the
  lease protocol (`leases.WriteSession`), so a GC never takes a chunk a manifest does not
  name yet. An archived point's packs are re-sealed as they are (their index digests are of
  the opened content), its index and manifest copy rekeyed.
- A point whose manifest does not match the digest its row records is left as it is and
  named: converting it would make a damaged or forged manifest look sound.
- Hold notes, ``vault/locked.json`` and ``vault/stamped.json`` are sealed in place.
- A garbage collection then deletes the plaintext chunks no manifest names any more; one
  the storage still locks (S3 Object Lock) is left and listed with its date, never deleted
  early. Whatever plaintext remains is listed.
- One gate operation (``vault_encrypt``, one audit record with the counts) records each
  point's new manifest digest and, once nothing plaintext is readable, clears
  ``plaintext_objects`` (a trigger forbids setting it again).

A manifest is rewritten before its row's digest, so each rewrite is noted first in a sealed
journal (``convert/<point>.json``: the digest the row had, the one it gets) kept until the
vault is done: a run killed anywhere is finished by the next, and a row is only moved from
the digest it had when its manifest was converted. Running it on a vault that still holds
locked plaintext is harmless; on an encrypted vault it is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import blake3

from portal import clock, gate
from portal.gate import Check, DomainError

from .. import locations
from ..models import RecoveryPoint, Vault
from ..storage.archive import unpack
from ..storage.backends import Backend, Retention
from ..storage.chunks import chunk_key, decode_chunk
from ..storage.crypto import KEYS_PREFIX, SealedBackend, is_sealed, plain_chunk_id
from ..storage.errors import ObjectNotFound, StorageError
from ..storage.holds import HOLDS_PREFIX, LOCK_KEY, STAMP_KEY
from ..storage.leases import WriteSession
from ..storage.manifest import Manifest, check_point_id, manifest_key
from ..storage.writer import store_chunk

JOURNAL_PREFIX = "convert/"
# Plaintext chunks read, re-keyed and written per lease record (each up to 4 MiB).
BATCH = 16


@dataclass
class EncryptResult:
    vault: str
    points: int = 0  # manifests rewritten sealed (either tier)
    chunks: int = 0  # chunks written sealed under their keyed id
    packs: int = 0  # archive packs re-sealed
    notes: int = 0  # hold notes and vault records sealed
    digests: int = 0  # point rows given their new manifest digest
    deleted: int = 0  # chunks no manifest names, deleted by the garbage collection
    locked: list[tuple[str, str]] = field(default_factory=list)  # (key, locked until)
    skipped: list[str] = field(default_factory=list)  # points left as they were, and why
    remaining: list[str] = field(default_factory=list)  # other plaintext still readable
    # Objects rewritten in place on a versioned store (S3), whose plaintext version the
    # bucket keeps below the sealed one: (key, locked until).
    versions: list[tuple[str, str]] = field(default_factory=list)
    encrypted: bool = False  # plaintext_objects cleared


class _PlainIds:
    """How chunks were named before encryption: unkeyed BLAKE3."""

    def chunk_id(self, data: bytes | memoryview) -> str:
        return plain_chunk_id(data)

    def chunk_matches(self, expected: str, data: bytes | memoryview) -> bool:
        return plain_chunk_id(data) == expected


class _Session(WriteSession):
    """The lease of a conversion: its point's manifest exists, and a lease a killed run
    left is taken over (one run per vault at a time, as for a copy)."""

    def open(self) -> None:
        self._open = True
        self._beat()


def _digest(raw: bytes) -> str:
    return blake3.blake3(raw).hexdigest()


class _Conversion:
    def __init__(self, vault: Vault, on_point: Callable[[str], None] | None) -> None:
        self.vault = vault
        self.on_point = on_point
        self.now = clock.now()
        self.result = EncryptResult(vault.name)
        self.store = locations.vault_store(vault)
        self.standard = self.store.backend
        tiers = locations.raw_stored_tiers(vault)
        self.archive = locations.archive_backend(vault) if "archive" in tiers else None
        self.rows = {
            key: (pk, digest)
            for pk, key, digest in RecoveryPoint.objects.filter(vault=vault)
            .exclude(storage_key="")
            .values_list("pk", "storage_key", "digest")
        }
        self.journal = self._read_journal()
        self.mapped: dict[str, str] = {}  # plaintext chunk id -> keyed id, this run
        self.sealed: dict[str, set[str]] = {"standard": set(), "archive": set()}

    # Shared ---------------------------------------------------------------------------------

    def _retention(self, inner: Backend, key: str) -> Retention | None:
        """The lock an object has, for the object that replaces it (None: none left)."""
        if not inner.supports_object_lock:
            return None
        lock = inner.lock_of(key)
        if lock is None or lock.mode is None or lock.until is None or lock.until <= self.now:
            return None
        return Retention(lock.mode, lock.until)

    def _replace(self, tier: str, backend: SealedBackend, key: str, body: bytes) -> None:
        """Rewrite an object sealed in place, as long locked as it was."""
        backend.put(key, body, self._retention(backend.inner, key))
        self.sealed[tier].add(key)
        self._older_versions(tier, backend.inner, key)

    def _older_versions(self, tier: str, inner: Backend, key: str) -> None:
        """A versioned store (S3) keeps the plaintext version of an object rewritten in place
        below the sealed one, and no one may delete it before its lock ends: listed."""
        if not inner.supports_object_lock:
            return
        locks = inner.version_locks(key)
        if len(locks) > 1:
            until = max((lock.until for lock in locks if lock.until is not None), default=None)
            self.result.versions.append((f"{tier} {key}", str(until or "unlocked")))

    def _read_journal(self) -> dict[str, tuple[str, str]]:
        found = {}
        for key in self.standard.list(JOURNAL_PREFIX):
            document = json.loads(self.standard.get(key))
            found[str(document["point_id"])] = (str(document["from"]), str(document["to"]))
        return found

    def _matches_row(self, point_id: str, plain: bytes) -> bool:
        """Whether the manifest is the one its row records (or one the journal says it
        became or came from); else the point is named as skipped, and left as it is."""
        current = _digest(plain)
        row = self.rows.get(point_id)
        recorded = row[1] if row is not None else current
        pending = self.journal.get(point_id)
        if recorded in ("", current) or (pending and {recorded, current} <= set(pending)):
            return True
        self.result.skipped.append(
            f"point {point_id}: its manifest does not match the digest recorded for point "
            f"#{row[0] if row else '?'}; left as it is: verify the point"
        )
        return False

    def _journal(self, point_id: str, new_raw: bytes) -> None:
        """Note the digest the point's row gets before its manifest is rewritten."""
        row = self.rows.get(point_id)
        pending = self.journal.get(point_id)
        origin = pending[0] if pending is not None else (row[1] if row is not None else "")
        entry = (origin, _digest(new_raw))
        if pending != entry:
            document = {"point_id": point_id, "from": entry[0], "to": entry[1]}
            key = f"{JOURNAL_PREFIX}{check_point_id(point_id)}.json"
            self.standard.put(key, json.dumps(document).encode())
            self.sealed["standard"].add(key)
            self.journal[point_id] = entry

    def _done(self, point_id: str) -> None:
        if self.on_point is not None:
            self.on_point(point_id)

    # The standard tier ----------------------------------------------------------------------

    def standard_point(self, point_id: str) -> None:
        inner, key = self.standard.inner, manifest_key(point_id)
        raw = inner.get(key)
        plain = self.standard.open(key, raw)
        if not self._matches_row(point_id, plain):
            return
        manifest = Manifest.from_bytes(plain)
        session = _Session(
            self.standard, point_id, "encrypt", self._retention(inner, key),
            timings=self.store.timings,
        )  # fmt: skip
        session.open()
        try:
            ids = self._standard_chunks(session, manifest)
            if is_sealed(raw) and not ids:
                session.release()
                self.sealed["standard"].add(key)
                return
            new_raw = manifest.rekeyed(ids).to_bytes()
            self._journal(point_id, new_raw)
            session.commit(new_raw)
        except BaseException:
            session.release()
            raise
        self.sealed["standard"].add(key)
        self._older_versions("standard", inner, key)
        self.result.points += 1
        self._done(point_id)

    def _standard_chunks(self, session: _Session, manifest: Manifest) -> dict[str, str]:
        """Seal the point's plaintext chunks under their keyed ids; old id -> new id."""
        ids: dict[str, str] = {}
        present: list[str] = []
        items = list(manifest.chunks.items())
        for start in range(0, len(items), BATCH):
            named: list[str] = []
            batch: list[tuple[str, bytes]] = []
            for chunk, size in items[start : start + BATCH]:
                if chunk in self.mapped:  # converted for an earlier point of this run
                    ids[chunk] = self.mapped[chunk]
                    named.append(ids[chunk])
                    present.append(ids[chunk])
                    continue
                if chunk in self.sealed["standard"]:
                    continue
                try:
                    blob = self.standard.inner.get(chunk_key(chunk))
                except ObjectNotFound:
                    raise StorageError(f"chunk {chunk} is missing from the store") from None
                if is_sealed(blob):
                    self.sealed["standard"].add(chunk)
                    continue
                data = decode_chunk(chunk, blob, size, _PlainIds())
                ids[chunk] = self.mapped[chunk] = self.standard.chunk_id(data)
                named.append(ids[chunk])
                batch.append((ids[chunk], data))
            if not named:
                continue
            # Named in the lease before they are looked for: the GC keeps them from now on.
            session.record(named)
            for new, data in batch:
                written = store_chunk(
                    self.standard, new, data, level=self.store.level, retention=session.retention
                )
                if written is None:
                    present.append(new)
                else:
                    self.result.chunks += 1
                self.sealed["standard"].add(new)
            session.heartbeat_if_due()
        session.settle(present)
        return ids

    # The archive tier -----------------------------------------------------------------------

    def archive_point(self, backend: SealedBackend, point_id: str) -> None:
        inner = backend.inner
        manifest_name, index_name = f"manifests/{point_id}.json", f"packs/{point_id}/index.json"
        raw, raw_index = inner.get(manifest_name), inner.get(index_name)
        plain = backend.open(manifest_name, raw)
        if not self._matches_row(point_id, plain):
            return
        manifest = Manifest.from_bytes(plain)
        index = json.loads(backend.open(index_name, raw_index))
        ids = self._reseal_packs(backend, point_id, index)
        entries = list(index["chunks"])
        if len(entries) != len(manifest.chunks):
            raise StorageError("its archive index and manifest do not line up")
        keyed = [new for new, _plain in ids]
        for (new, old), chunk in zip(ids, manifest.chunks, strict=True):
            if chunk not in (new, old):
                raise StorageError("its archive index and manifest name different chunks")
        new_raw = manifest.rekeyed(dict(zip(manifest.chunks, keyed, strict=True))).to_bytes()
        new_index = {
            **index,
            "manifest_digest": _digest(new_raw),
            "chunks": [[new, *entry[1:]] for new, entry in zip(keyed, entries, strict=True)],
        }
        self.sealed["archive"].update((manifest_name, index_name))
        if is_sealed(raw) and is_sealed(raw_index) and new_raw == plain and new_index == index:
            return
        self._journal(point_id, new_raw)
        # The index first, the manifest copy (the point's completeness) last.
        for name, body in ((index_name, json.dumps(new_index).encode()), (manifest_name, new_raw)):
            self._replace("archive", backend, name, body)
        self.result.points += 1
        self._done(point_id)

    def _reseal_packs(
        self, backend: SealedBackend, point_id: str, index: dict[str, Any]
    ) -> list[tuple[str, str]]:
        """Seal the point's plaintext packs in place; each chunk's keyed and plain id, in
        index order (each checked against the id the index names)."""
        ids: list[tuple[str, str]] = [("", "")] * len(index["chunks"])
        for number, pack in enumerate(index["packs"]):
            key = str(pack["key"])
            raw = backend.inner.get(key)
            opened = backend.open(key, raw)
            if _digest(opened) != pack["digest"]:
                raise StorageError(f"archive pack {key} is damaged")
            data = unpack(opened, key)
            for position, (chunk, in_pack, offset, length) in enumerate(index["chunks"]):
                if int(in_pack) != number:
                    continue
                piece = data[int(offset) : int(offset) + int(length)]
                ids[position] = (backend.chunk_id(piece), plain_chunk_id(piece))
                if chunk not in ids[position]:
                    raise StorageError(f"a chunk in archive pack {key} is damaged")
            if not is_sealed(raw):
                self._replace("archive", backend, key, opened)
                self.result.packs += 1
            self.sealed["archive"].add(key)
        if ("", "") in ids:
            raise StorageError(f"the archive index of point {point_id} names a missing pack")
        return ids

    # Notes, the garbage, what remains -------------------------------------------------------

    def notes(self) -> None:
        inner = self.standard.inner
        for key in [*inner.list(HOLDS_PREFIX), LOCK_KEY, STAMP_KEY]:
            try:
                raw = inner.get(key)
            except ObjectNotFound:
                continue
            if not is_sealed(raw):
                self._replace("standard", self.standard, key, raw)
                self.result.notes += 1
            self.sealed["standard"].add(key)

    def leftovers(self) -> None:
        """Plaintext still readable in either tier: locked (listed with its date) or not."""
        tiers = {"standard": self.standard.inner}
        if self.archive is not None:
            tiers["archive"] = self.archive.inner
        for tier, inner in tiers.items():
            for key in inner.list(""):
                name = key.rpartition("/")[2] if key.startswith("chunks/") else key
                if key.startswith(KEYS_PREFIX) or name in self.sealed[tier]:
                    continue
                try:
                    if is_sealed(inner.get(key)):
                        continue
                    lock = inner.lock_of(key)
                except ObjectNotFound:
                    continue
                if lock is not None and lock.active(self.now):
                    until = "a legal hold" if lock.legal_hold else str(lock.until)
                    self.result.locked.append((f"{tier} {key}", until))
                else:
                    self.result.remaining.append(f"{tier} {key}")

    def record(self, actor: Any) -> EncryptResult:
        """The gate operation: new digests, and the flag once nothing plaintext remains."""
        result = self.result
        result.encrypted = not (result.locked or result.remaining or result.skipped)

        def change(check: Check) -> EncryptResult:
            for point_id, (origin, new) in self.journal.items():
                row = self.rows.get(point_id)
                if row is not None:
                    result.digests += (
                        RecoveryPoint.objects.filter(pk=row[0], digest=origin)
                        .exclude(digest=new)
                        .update(digest=new)
                    )
            if result.encrypted:
                Vault.objects.filter(pk=self.vault.pk, plaintext_objects=True).update(
                    plaintext_objects=False
                )
            return result

        gate.execute(
            "vault_encrypt",
            actor=actor,
            vault=self.vault,
            change=change,
            target=f"vault:{self.vault.name}",
            before={"plaintext_objects": True},
            after=lambda r: {
                "plaintext_objects": not r.encrypted,
                "points": r.points,
                "chunks": r.chunks,
                "packs": r.packs,
                "notes": r.notes,
                "digests": r.digests,
                "deleted_chunks": r.deleted,
                "locked": len(r.locked),
                "skipped": len(r.skipped),
                "remaining": len(r.remaining),
            },
        )
        if result.encrypted:
            for key in list(self.standard.list(JOURNAL_PREFIX)):
                self.standard.delete(key)
        return result


def vault_encrypt(
    *, actor: Any = None, name: str, on_point: Callable[[str], None] | None = None
) -> EncryptResult:
    """Convert vault ``name``'s objects from before encryption (see the module docstring).
    ``on_point`` is called after each point is converted (tests stop a run half-way)."""
    vault = Vault.objects.filter(name=name).first()
    if vault is None:
        raise DomainError("not_found", f"There is no vault named {name!r}; nothing was changed.")
    if not vault.plaintext_objects:
        raise DomainError(
            "validation_error",
            f"Vault {name} is encrypted already: every object of it is sealed; nothing to do.",
        )
    run = _Conversion(vault, on_point)
    for point_id in run.store.points():
        try:
            run.standard_point(point_id)
        except StorageError as exc:
            run.result.skipped.append(f"point {point_id}: {exc}")
    if run.archive is not None:
        archive = run.archive
        for point_id in [
            key[len("manifests/") : -len(".json")] for key in archive.list("manifests/")
        ]:
            try:
                run.archive_point(archive, point_id)
            except StorageError as exc:
                run.result.skipped.append(f"archived point {point_id}: {exc}")
    run.notes()
    run.result.deleted = run.store.gc().deleted_chunks
    run.leftovers()
    return run.record(actor)
