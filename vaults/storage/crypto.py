"""Encryption at rest (SPEC 3.11): every object sealed with its vault's data key.

Key hierarchy (docs/storage.md, "Encryption"):

- The **master key** (32 random bytes) lives in a file (`HOLDFAST_KEY_FILE`) or, later, a
  KMS; it never enters the database. It only wraps data keys.
- A **data key** (32 random bytes) per vault, stored only wrapped by the master key: in the
  database and as ``keys/data-key-<master key id>.json`` beside the vault's data, so a store
  can be read back with the master key alone. Subkeys are derived from it with BLAKE3's
  key derivation: one for AES-256-GCM, one for the keyed BLAKE3 that names chunks (the same
  content in two vaults gets unrelated names), one for the key's public id.
- Every object is ``HFE | version 1 | 12-byte random nonce | AES-256-GCM(ciphertext + tag)``
  with the object's key (its name in the store) as associated data, so an object moved or
  swapped to another name fails authentication.

`SealedBackend` wraps any `Backend`: `put` seals, `get` opens, everything else (lists,
sizes, locks) passes through. Stores accept nothing else, so no path writes plaintext.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .backends import Backend, ObjectLock, Retention, check_key, fsync_dir
from .errors import ObjectNotFound, StorageError

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
OBJECT_MAGIC = b"HFE"
OBJECT_VERSION = 1
OBJECT_HEADER = OBJECT_MAGIC + bytes((OBJECT_VERSION,))
HEADER_SIZE = len(OBJECT_HEADER) + NONCE_SIZE
OVERHEAD = HEADER_SIZE + TAG_SIZE

KEYS_PREFIX = "keys/"
WRAPPED_FORMAT = "holdfast.data-key"
MASTER_FORMAT = "holdfast.master-key"
ALGORITHM = "AES-256-GCM"

# BLAKE3 key-derivation contexts: globally unique, hard-coded, never reused for another purpose.
_CONTEXT_OBJECTS = "holdfast 2026-11-30 object encryption (AES-256-GCM)"
_CONTEXT_CHUNK_IDS = "holdfast 2026-11-30 chunk ids (keyed BLAKE3)"
_CONTEXT_KEY_ID = "holdfast 2026-11-30 data key id"
_CONTEXT_WRAPPING = "holdfast 2026-11-30 data key wrapping (AES-256-GCM)"
_CONTEXT_MASTER_ID = "holdfast 2026-11-30 master key id"


def sentence_start(what: str) -> str:
    """``what`` starting a sentence: only its first letter raised (vault names keep case)."""
    return what[:1].upper() + what[1:]


def _derive(context: str, secret: bytes) -> bytes:
    return blake3.blake3(secret, derive_key_context=context).digest()


class KeyUnavailable(StorageError):
    """A key cannot be had: the master key file is missing, unreadable, malformed or not the
    key that wrapped a data key, or a data key does not unwrap. Nothing was read or written."""


class ObjectTampered(StorageError):
    """An object fails authentication: damaged, tampered with, or moved from another name."""

    def __init__(self, key: str, reason: str = "") -> None:
        why = reason or (
            "it fails authentication (damaged, tampered with, or swapped with another object)"
        )
        super().__init__(f"Object {key} cannot be trusted: {why}.")
        self.key = key
        self.reason = why


class ChunkIds(Protocol):
    """How a store names chunks: the keyed hash of their plaintext."""

    def chunk_id(self, data: bytes | memoryview) -> str: ...

    def chunk_matches(self, expected: str, data: bytes | memoryview) -> bool: ...


def plain_chunk_id(data: bytes | memoryview) -> str:
    """The unkeyed BLAKE3 id of chunks written before encryption (legacy stores only)."""
    return blake3.blake3(data).hexdigest()


class DataKey:
    """A vault's data key and the subkeys derived from it."""

    __slots__ = ("_aead", "_enc_key", "_id_key", "_secret", "key_id")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != KEY_SIZE:
            raise KeyUnavailable(f"A data key has {KEY_SIZE} bytes, not {len(secret)}.")
        self._secret = bytes(secret)
        self._enc_key = _derive(_CONTEXT_OBJECTS, self._secret)
        self._aead = AESGCM(self._enc_key)
        self._id_key = _derive(_CONTEXT_CHUNK_IDS, self._secret)
        self.key_id = _derive(_CONTEXT_KEY_ID, self._secret)[:16].hex()

    def __repr__(self) -> str:
        return f"DataKey(id={self.key_id})"

    @classmethod
    def generate(cls) -> DataKey:
        return cls(os.urandom(KEY_SIZE))

    def chunk_id(self, data: bytes | memoryview) -> str:
        return blake3.blake3(data, key=self._id_key).hexdigest()

    def seal(self, name: str, *parts: bytes | bytearray | memoryview) -> bytearray:
        """``HFE|1|nonce|ciphertext|tag`` of the concatenated ``parts``, encrypted straight
        into one buffer (a chunk's header and compressed payload are never joined first)."""
        nonce = os.urandom(NONCE_SIZE)
        size = sum(len(part) for part in parts)
        sealed = bytearray(HEADER_SIZE + size + TAG_SIZE)
        sealed[: len(OBJECT_HEADER)] = OBJECT_HEADER
        sealed[len(OBJECT_HEADER) : HEADER_SIZE] = nonce
        out = memoryview(sealed)
        if len(parts) == 1:
            self._aead.encrypt_into(nonce, parts[0], _aad(name), out[HEADER_SIZE:])
            return sealed
        encryptor = Cipher(algorithms.AES(self._enc_key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(_aad(name))
        at = HEADER_SIZE
        for part in parts:
            # update_into wants room for a block more than it writes; the tag's 16 bytes
            # at the end of the buffer are that room, and are written last.
            at += encryptor.update_into(part, out[at:])
        encryptor.finalize()
        out[at : at + TAG_SIZE] = encryptor.tag
        return sealed

    def open(self, name: str, blob: bytes) -> bytes:
        if not is_sealed(blob):
            raise ObjectTampered(name, "it is not an encrypted Holdfast object")
        if blob[3] != OBJECT_VERSION:
            raise ObjectTampered(name, f"unknown encryption format version {blob[3]}")
        if len(blob) < OVERHEAD:
            raise ObjectTampered(name, "it is truncated")
        try:
            return self._aead.decrypt(
                blob[len(OBJECT_HEADER) : HEADER_SIZE], memoryview(blob)[HEADER_SIZE:], _aad(name)
            )
        except InvalidTag:
            raise ObjectTampered(name) from None


def _aad(name: str) -> bytes:
    # The header and the object's name: a sealed object is only valid under its own key.
    return OBJECT_HEADER + b"\0" + name.encode()


def is_sealed(blob: bytes | bytearray | memoryview) -> bool:
    return bytes(blob[:3]) == OBJECT_MAGIC


@dataclass(frozen=True)
class WrappedKey:
    """A data key encrypted by a master key: what the database and the store keep."""

    key_id: str
    master_key_id: str
    nonce: str  # base64
    wrapped: str  # base64 of ciphertext + tag
    algorithm: str = ALGORITHM

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": WRAPPED_FORMAT,
                "version": 1,
                "algorithm": self.algorithm,
                "key_id": self.key_id,
                "master_key_id": self.master_key_id,
                "nonce": self.nonce,
                "wrapped": self.wrapped,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes, where: str = "") -> WrappedKey:
        try:
            document = json.loads(text)
            if document.get("format") != WRAPPED_FORMAT or document.get("version") != 1:
                raise ValueError("not a Holdfast wrapped data key")
            return cls(
                key_id=str(document["key_id"]),
                master_key_id=str(document["master_key_id"]),
                nonce=str(document["nonce"]),
                wrapped=str(document["wrapped"]),
                algorithm=str(document.get("algorithm", ALGORITHM)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyUnavailable(f"The wrapped data key {where} is malformed: {exc}.") from None


class MasterKey:
    """The key that wraps data keys; `source` says where it came from, for messages."""

    __slots__ = ("_aead", "key_id", "source")

    def __init__(self, secret: bytes, source: str = "") -> None:
        if len(secret) != KEY_SIZE:
            raise KeyUnavailable(f"A master key has {KEY_SIZE} bytes, not {len(secret)}.")
        self._aead = AESGCM(_derive(_CONTEXT_WRAPPING, secret))
        self.key_id = _derive(_CONTEXT_MASTER_ID, secret)[:16].hex()
        self.source = source

    def __repr__(self) -> str:
        return f"MasterKey(id={self.key_id})"

    def wrap(self, key: DataKey) -> WrappedKey:
        nonce = os.urandom(NONCE_SIZE)
        wrapped = self._aead.encrypt(nonce, key._secret, _wrap_aad(key.key_id))
        return WrappedKey(
            key_id=key.key_id,
            master_key_id=self.key_id,
            nonce=base64.b64encode(nonce).decode(),
            wrapped=base64.b64encode(wrapped).decode(),
        )

    def unwrap(self, wrapped: WrappedKey, what: str = "the data key") -> DataKey:
        if wrapped.master_key_id != self.key_id:
            raise KeyUnavailable(
                f"{sentence_start(what)} is wrapped by master key {wrapped.master_key_id}, but the "
                f"master key {self.source or 'given'} is {self.key_id}: put the right key file "
                "back (HOLDFAST_KEY_FILE); nothing was read or written."
            )
        try:
            secret = self._aead.decrypt(
                base64.b64decode(wrapped.nonce),
                base64.b64decode(wrapped.wrapped),
                _wrap_aad(wrapped.key_id),
            )
        except (InvalidTag, ValueError):
            raise KeyUnavailable(
                f"{sentence_start(what)} does not unwrap with master key {self.key_id}: the "
                "wrapped copy is damaged or was replaced; nothing was read or written."
            ) from None
        key = DataKey(secret)
        if key.key_id != wrapped.key_id:
            raise KeyUnavailable(f"{sentence_start(what)} unwraps to another key than it names.")
        return key


def _wrap_aad(key_id: str) -> bytes:
    return b"holdfast.data-key.v1\0" + key_id.encode()


class KeyProvider(Protocol):
    """Where master keys come from: a file today, a KMS later (`vaults.keyring`)."""

    def current(self) -> MasterKey:
        """The master key that wraps new data keys."""

    def find(self, master_key_id: str) -> MasterKey | None:
        """The master key with this id, if this provider has it."""


# Master key files --------------------------------------------------------------------------


def master_key_document(secret: bytes) -> bytes:
    key = MasterKey(secret)
    document = {
        "format": MASTER_FORMAT,
        "version": 1,
        "key_id": key.key_id,
        "key": base64.b64encode(secret).decode(),
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "note": (
            "Holdfast's master key: it unlocks every vault's data. Keep a copy apart from "
            "the data (not in the storage, not in database backups)."
        ),
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def read_master_key(path: Path) -> MasterKey:
    """The master key in ``path``; `KeyUnavailable` with a sentence when it cannot be used."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KeyUnavailable(f"The master key file {path} does not exist.") from None
    except OSError as exc:
        raise KeyUnavailable(
            f"The master key file {path} cannot be read ({exc.strerror or exc}); it is left as "
            "it is: fix its permissions for the user Holdfast runs as."
        ) from None
    try:
        document = json.loads(raw)
        if document.get("format") != MASTER_FORMAT or document.get("version") != 1:
            raise ValueError("it is not a Holdfast master key file")
        secret = base64.b64decode(document["key"], validate=True)
        key = MasterKey(secret, source=str(path))
        if document.get("key_id") not in (None, key.key_id):
            raise ValueError("its key does not match its key_id")
    except (ValueError, KeyError, TypeError, AttributeError, KeyUnavailable) as exc:
        raise KeyUnavailable(
            f"The master key file {path} is malformed ({exc}); it is left as it is: restore "
            "it from its backup."
        ) from None
    return key


def create_master_key_file(path: Path) -> MasterKey:
    """Write a new random master key to ``path`` (mode 0600; never over an existing file).

    The key is written to a temporary file and linked into place, so a reader sees no file
    or the whole key; `FileExistsError` when another process created one first."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = os.urandom(KEY_SIZE)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, stat.S_IRUSR | stat.S_IWUSR)
    try:
        try:
            os.write(fd, master_key_document(secret))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return MasterKey(secret, source=str(path))


# Sealed backends ---------------------------------------------------------------------------


def key_object_name(master_key_id: str) -> str:
    return f"{KEYS_PREFIX}data-key-{master_key_id}.json"


class SealedBackend(Backend):
    """A backend whose every object is sealed with one data key (see the module docstring).

    ``wrapped`` (the data key wrapped by the current master key) is written once, unsealed,
    as ``keys/data-key-<master key id>.json`` before the first object, and locked at least as
    long as any manifest written through this backend. ``legacy_plaintext`` lets a store
    written before encryption be read while `keys encrypt-vault` converts it: its plaintext
    objects and unkeyed chunk ids are accepted on reading; writes are always sealed."""

    def __init__(
        self,
        inner: Backend,
        key: DataKey,
        *,
        wrapped: WrappedKey | None = None,
        legacy_plaintext: bool = False,
    ) -> None:
        if isinstance(inner, SealedBackend):
            raise StorageError("A sealed backend cannot wrap another sealed backend.")
        self.inner = inner
        self.key = key
        self.wrapped = wrapped
        self.legacy_plaintext = legacy_plaintext
        self.supports_object_lock = inner.supports_object_lock
        self._key_written = wrapped is None

    def __repr__(self) -> str:
        return f"SealedBackend({self.inner!r}, key={self.key.key_id})"

    def __getattr__(self, name: str) -> Any:
        # Backend-specific extras (root, location, request_restore, sweep_temporaries...).
        if name.startswith("__") or name in ("inner", "key"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    # Chunk ids -----------------------------------------------------------------------------

    def chunk_id(self, data: bytes | memoryview) -> str:
        return self.key.chunk_id(data)

    def chunk_matches(self, expected: str, data: bytes | memoryview) -> bool:
        if self.key.chunk_id(data) == expected:
            return True
        return self.legacy_plaintext and plain_chunk_id(data) == expected

    # Objects -------------------------------------------------------------------------------

    def _writable(self, key: str) -> str:
        check_key(key)
        if key.startswith(KEYS_PREFIX):
            raise StorageError(f"{key!r} is reserved for wrapped keys.")
        if not self._key_written:
            assert self.wrapped is not None
            name = key_object_name(self.wrapped.master_key_id)
            if not self.inner.put_if_absent(name, self.wrapped.to_json().encode()):
                there = WrappedKey.from_json(self.inner.get(name), where=name)
                if there.key_id != self.wrapped.key_id:
                    # Sealing with our key beside another's would leave a store no key opens.
                    raise KeyUnavailable(
                        f"The store at {self.inner!r} keeps the data key {there.key_id} of "
                        f"another vault (this vault's is {self.wrapped.key_id}): a vault of the "
                        "same name left it, or another installation writes there. Nothing was "
                        "written; move that store away or use another storage location."
                    )
            self._key_written = True
        return key

    def _lock_key_object(self, key: str, retention: Retention | None) -> None:
        # Whoever can read a locked manifest must still find the key that opens it.
        if retention is not None and key.startswith("manifests/"):
            self.keep_key_locked(retention)

    def keep_key_locked(self, retention: Retention) -> None:
        """Lock the wrapped key kept beside the data at least until ``retention``."""
        if self.wrapped is None or not self.inner.supports_object_lock:
            return
        name = key_object_name(self.wrapped.master_key_id)
        lock = self.inner.lock_of(name)
        if lock is None or not lock.covers(retention):
            self.inner.extend_retention(name, retention)

    def put(self, key: str, data: bytes, retention: Retention | None = None) -> None:
        self._writable(key)
        self.inner.put(key, self.key.seal(key, data), retention)  # type: ignore[arg-type]
        self._lock_key_object(key, retention)

    def put_if_absent(self, key: str, data: bytes, retention: Retention | None = None) -> bool:
        self._writable(key)
        written = self.inner.put_if_absent(key, self.key.seal(key, data), retention)  # type: ignore[arg-type]
        if written:
            self._lock_key_object(key, retention)
        return written

    def put_sealed(
        self,
        key: str,
        blob: bytearray,
        retention: Retention | None = None,
        *,
        if_absent: bool = False,
    ) -> bool:
        """Store an object sealed already for ``key`` by this backend (`seal`); with
        ``if_absent``, only when the key does not exist. Whether it was written."""
        self._writable(key)
        if if_absent:
            if not self.inner.put_if_absent(key, blob, retention):  # type: ignore[arg-type]
                return False
        else:
            self.inner.put(key, blob, retention)  # type: ignore[arg-type]
        self._lock_key_object(key, retention)
        return True

    def seal(self, key: str, *parts: bytes | bytearray | memoryview) -> bytearray:
        return self.key.seal(key, *parts)

    def get(self, key: str) -> bytes:
        return self.open(key, self.inner.get(key))

    def open(self, key: str, blob: bytes) -> bytes:
        if is_sealed(blob) or not self.legacy_plaintext:
            return self.key.open(key, blob)
        return blob

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def list(self, prefix: str) -> Iterator[str]:
        return self.inner.list(prefix)

    def size(self, key: str) -> int:
        return self.inner.size(key)

    def mtime(self, key: str) -> float:
        return self.inner.mtime(key)

    def lock_of(self, key: str) -> ObjectLock | None:
        return self.inner.lock_of(key)

    def version_locks(self, key: str) -> Sequence[ObjectLock]:
        return self.inner.version_locks(key)

    def extend_retention(self, key: str, retention: Retention) -> bool:
        changed = self.inner.extend_retention(key, retention)
        self._lock_key_object(key, retention)
        return changed

    @contextlib.contextmanager
    def deletes_batched(self) -> Iterator[None]:
        with self.inner.deletes_batched():
            yield


def require_sealed(backend: Backend) -> SealedBackend:
    """The backend, if it seals: stores refuse any other, so nothing reaches storage in
    plaintext, whatever the configuration says."""
    if not isinstance(backend, SealedBackend):
        raise KeyUnavailable(
            f"{backend!r} does not encrypt: a store is only opened with its vault's data key "
            "(SealedBackend); nothing was read or written."
        )
    return backend


def sealed(inner: Backend, key: DataKey | None = None) -> SealedBackend:
    """A sealed backend with ``key`` (a new random one if None): tests and benchmarks."""
    return SealedBackend(inner, key or DataKey.generate())


def stored_keys(inner: Backend) -> list[WrappedKey]:
    """Every wrapped data key kept beside a store's data (one per master key it has seen).
    Only one under its own name counts: another vault's key planted under a name that sorts
    first must not open the store (nor claim a master key its name does not)."""
    found = []
    for name in inner.list(KEYS_PREFIX):
        try:
            wrapped = WrappedKey.from_json(inner.get(name), where=name)
        except (KeyUnavailable, ObjectNotFound):
            continue
        if name == key_object_name(wrapped.master_key_id):
            found.append(wrapped)
    return found


def open_stored_key(inner: Backend, masters: Sequence[MasterKey]) -> tuple[DataKey, WrappedKey]:
    """The store's data key from its own ``keys/`` objects and a master key alone (disaster
    recovery: no database). `KeyUnavailable` naming what is there when none unwraps."""
    stored = stored_keys(inner)
    by_id = {master.key_id: master for master in masters}
    failures = []
    for wrapped in stored:
        master = by_id.get(wrapped.master_key_id)
        if master is None:
            failures.append(f"one wrapped by master key {wrapped.master_key_id}")
            continue
        try:
            return master.unwrap(wrapped), wrapped
        except KeyUnavailable as exc:
            failures.append(str(exc))
    have = ", ".join(sorted(by_id)) or "none"
    if not stored:
        raise KeyUnavailable(f"The store at {inner!r} keeps no wrapped data key under keys/.")
    raise KeyUnavailable(
        f"No data key kept in the store at {inner!r} opens with the master key(s) {have}: "
        + "; ".join(failures)
        + "."
    )


def open_store(
    inner: Backend, masters: Sequence[MasterKey], *, plaintext: bool = False
) -> SealedBackend:
    """A store opened with the data key it keeps under ``keys/`` and a master key alone
    (disaster recovery, a store whose vault row is gone): nothing else is needed.

    Only sealed objects are read unless ``plaintext`` (the reader knows the store is from
    before encryption, or partly converted): whoever can write to the storage could
    otherwise plant plaintext objects, or remove ``keys/`` to make the store pass for one
    from before encryption. A store with no ``keys/`` opens only with ``plaintext``."""
    if not any(True for _ in inner.list(KEYS_PREFIX)):
        if not plaintext:
            raise KeyUnavailable(
                f"The store at {inner!r} keeps no wrapped data key under keys/: it was removed, "
                "or the store is from before encryption (then say so: its plaintext objects "
                "are read only when asked)."
            )
        return SealedBackend(inner, DataKey.generate(), legacy_plaintext=True)
    key, wrapped = open_stored_key(inner, masters)
    return SealedBackend(inner, key, wrapped=wrapped, legacy_plaintext=plaintext)
