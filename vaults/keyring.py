"""The master key and every vault's data key (SPEC 3.11; docs/storage.md, "Encryption").

- The master key comes from a `KeyProvider` (``HOLDFAST_KEY_PROVIDER``); the default,
  `FileKeyProvider`, reads ``HOLDFAST_KEY_FILE``. A missing file is created (mode 0600) only
  while no vault has a data key: once one does, a missing file means the key was lost or
  moved, and creating another could never open those vaults, so it is an error naming the
  master key the vaults need. A file that exists but cannot be read or parsed is an error
  too, and is never replaced. In production (``DJANGO_DEBUG=0``) creating the key logs a
  warning: the key must be kept apart from the data.
- A vault's data key is made with the vault (`give_data_key`, in ``vault_create``; a vault
  from before encryption gets one on first use, through the gate): random, wrapped by the
  master key, stored in the vault's row (``data_key``, ``data_key_id``) and, by the store,
  beside its data (``keys/data-key-<master key id>.json``). Its id never changes (a
  trigger); a wrapped key that unwraps to another key is refused.
- `sealed` opens a vault's backend with its data key: every store of the vault is built on
  it (`vaults.locations`), so nothing reaches storage unencrypted.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.utils.module_loading import import_string

from .models import Vault
from .storage.backends import Backend
from .storage.crypto import (
    KEYS_PREFIX,
    DataKey,
    KeyProvider,
    KeyUnavailable,
    MasterKey,
    SealedBackend,
    WrappedKey,
    create_master_key_file,
    key_object_name,
    open_store,
    read_master_key,
    sentence_start,
)

logger = logging.getLogger(__name__)

# A rotation in progress keeps the new master key here until every data key is rewrapped.
NEXT_SUFFIX = ".next"


def next_key_path(path: Path) -> Path:
    return path.with_name(path.name + NEXT_SUFFIX)


class FileKeyProvider:
    """The master key in ``HOLDFAST_KEY_FILE`` (and, during a rotation, the next one)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path if path is not None else settings.HOLDFAST_KEY_FILE)

    def current(self) -> MasterKey:
        try:
            return _read_cached(self.path, _stamp(self.path))
        except KeyUnavailable:
            if self.path.exists() or self.path.is_symlink():
                raise  # unreadable or malformed: never replaced
        return self._create()

    def find(self, master_key_id: str) -> MasterKey | None:
        for path in (self.path, next_key_path(self.path)):
            if not path.exists():
                continue
            key = self.current() if path == self.path else _read_cached(path, _stamp(path))
            if key.key_id == master_key_id:
                return key
        return None

    def _create(self) -> MasterKey:
        needed = Vault.objects.exclude(data_key="").values_list("data_key", flat=True).first()
        if needed:
            wanted = WrappedKey.from_json(needed, "of a vault").master_key_id
            raise KeyUnavailable(
                f"The master key file {self.path} does not exist, but vaults' data keys are "
                f"wrapped by master key {wanted}: put that key file back (HOLDFAST_KEY_FILE). "
                "A new key could not open them, so none is created; nothing was read or written."
            )
        try:
            key = create_master_key_file(self.path)
        except FileExistsError:
            return _read_cached(self.path, _stamp(self.path))
        except OSError as exc:
            raise KeyUnavailable(
                f"The master key file {self.path} cannot be created ({exc.strerror or exc})."
            ) from None
        message = (
            "Created a new master key in %s (id %s). Keep a copy apart from the data and from "
            "database backups: without it no vault can be read, and with the storage it "
            "reads every vault."
        )
        if settings.DEBUG:
            logger.info(message, self.path, key.key_id)
        else:
            logger.warning(message, self.path, key.key_id)
        return key


def clear_caches() -> None:
    """Forget every master and data key read so far (after a key file is replaced in place,
    or between tests that point ``HOLDFAST_KEY_FILE`` elsewhere)."""
    _read_cached.cache_clear()
    _provider.cache_clear()
    _unwrapped.cache_clear()


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0, 0)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_cached(path: Path, stamp: tuple[int, int, int]) -> MasterKey:
    return read_master_key(path)


@functools.lru_cache(maxsize=4)
def _provider(dotted: str, key_file: str) -> KeyProvider:
    provider: KeyProvider = import_string(dotted)()
    return provider


def provider() -> KeyProvider:
    return _provider(settings.HOLDFAST_KEY_PROVIDER, str(settings.HOLDFAST_KEY_FILE))


def master_key() -> MasterKey:
    return provider().current()


def find_master(master_key_id: str, what: str) -> MasterKey:
    found = provider().find(master_key_id)
    if found is None:
        current = provider().current()
        raise KeyUnavailable(
            f"{sentence_start(what)} is wrapped by master key {master_key_id}, but the master key "
            f"{current.source or 'configured'} is {current.key_id}: put the right key file back "
            "(HOLDFAST_KEY_FILE); nothing was read or written."
        )
    return found


@functools.lru_cache(maxsize=1024)
def _unwrapped(wrapped_json: str, key_id: str, master_key_id: str, what: str) -> DataKey:
    wrapped = WrappedKey.from_json(wrapped_json, where=what)
    if wrapped.key_id != key_id:
        raise KeyUnavailable(
            f"{sentence_start(what)} names key {wrapped.key_id}, but the vault's key is {key_id}: "
            "the wrapped copy was replaced; nothing was read or written."
        )
    return find_master(wrapped.master_key_id, what).unwrap(wrapped, what)


def give_data_key(vault: Vault) -> None:
    """A new vault's data key, wrapped by the current master key (saved with the vault)."""
    key = DataKey.generate()
    vault.data_key, vault.data_key_id = master_key().wrap(key).to_json(), key.key_id


def data_key(vault: Vault) -> tuple[DataKey, WrappedKey]:
    """The vault's data key (made on first use for a vault from before encryption);
    `KeyUnavailable` with a sentence if it cannot be had (no master key, the wrong one, a
    wrapped copy that does not unwrap)."""
    if not vault.data_key_id:
        _make_data_key(vault)
    what = f"vault {vault.name}'s data key"
    wrapped = WrappedKey.from_json(vault.data_key, where=what)
    master = find_master(wrapped.master_key_id, what)
    return _unwrapped(vault.data_key, vault.data_key_id, master.key_id, what), wrapped


_key_maker: list[Callable[[Vault], None]] = []


def register_key_maker(make: Callable[[Vault], None]) -> None:
    """The service that gives a vault from before encryption its data key (through the
    gate); registered in `VaultsConfig.ready`, so this module imports no service."""
    _key_maker[:] = [make]


def _make_data_key(vault: Vault) -> None:
    for _attempt in range(2):
        vault.data_key, vault.data_key_id = (
            Vault.objects.filter(pk=vault.pk).values_list("data_key", "data_key_id").get()
        )
        if vault.data_key_id:
            return  # this instance was read before the key was given
        _key_maker[0](vault)


def sealed(vault: Vault, inner: Callable[[], Backend]) -> SealedBackend:
    """One of the vault's backends (made by ``inner``) sealed with the vault's data key. The
    key comes first: without it not even the store's directory is made."""
    key, wrapped = data_key(vault)
    return SealedBackend(inner(), key, wrapped=wrapped, legacy_plaintext=vault.plaintext_objects)


def stored_key_backend(inner: Backend) -> SealedBackend:
    """A store whose vault row is gone, opened with the key beside its data
    (`crypto.open_store`) and this installation's master key(s): plaintext objects are read
    only in a store with no ``keys/`` (from before encryption, or its keys removed: then its
    sealed objects fail, and the sweep reports what it cannot judge)."""
    legacy = not any(True for _ in inner.list(KEYS_PREFIX))
    return open_store(inner, _masters(), plaintext=legacy)


def _masters() -> list[MasterKey]:
    keys = [provider().current()]
    path = next_key_path(Path(settings.HOLDFAST_KEY_FILE))
    if path.exists():
        keys.append(_read_cached(path, _stamp(path)))
    return keys


def anchor_backend(inner: Backend) -> SealedBackend:
    """An audit-anchor store sealed with its own data key, kept only beside the anchors
    (``keys/``, wrapped by the master key): made on first use, found again by its master key.
    Its plaintext anchors from before encryption stay readable (`vaults.anchors`)."""
    master = master_key()
    name = key_object_name(master.key_id)
    if not inner.exists(name):
        if any(True for _ in inner.list(KEYS_PREFIX)):
            return open_store(inner, _masters(), plaintext=True)  # a rotation in progress
        # Two processes may race here: the first write wins, and both read it back.
        inner.put_if_absent(name, master.wrap(DataKey.generate()).to_json().encode())
    wrapped = WrappedKey.from_json(inner.get(name), where=f"{inner!r} {name}")
    key = master.unwrap(wrapped, f"the anchor key in {inner!r}")
    return SealedBackend(inner, key, wrapped=wrapped, legacy_plaintext=True)
