"""The master key administered (SPEC 3.11): ``manage.py keys rotate`` and ``keys check``.

Rotation rewraps every data key under a new master key; no data object is rewritten, since
the data keys themselves never change (a trigger keeps a vault's ``data_key_id``). Its steps,
each safe to repeat, so a rotation killed anywhere is finished by running it again:

1. Read the master key file and, when a rotation was interrupted, ``<file>.next``; prove
   every vault's data key and every audit-anchor store's key opens with one of them. A key
   that opens with neither (the wrong key file) stops here, before anything is written.
2. Make ``<file>.next`` (mode 0600) unless it exists: the new master key.
3. Beside each vault's data (both tiers) and each anchor store, put the data key wrapped by
   the new master key (``keys/data-key-<new id>.json``, never over an existing object), as
   long locked as the old one, so a store is never without a copy that opens.
4. In the database, rewrap every vault's data key (one gate operation, one audit record).
5. Keep the old key file as ``<file>.retired-<old id>`` and move ``.next`` into place.

Until step 5 the running services open both wrappings (`keyring.FileKeyProvider.find`).
The retired file is the admin's to destroy once the new key file has backups.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from django.conf import settings

from portal import gate
from portal.gate import Check

from .. import keyring, locations
from ..anchors import BackendAnchorStore, anchor_stores
from ..models import RecoveryPoint, Vault
from ..storage.backends import Backend, Retention, fsync_dir
from ..storage.crypto import (
    KEYS_PREFIX,
    DataKey,
    KeyUnavailable,
    MasterKey,
    WrappedKey,
    create_master_key_file,
    key_object_name,
    open_stored_key,
    read_master_key,
    sentence_start,
    stored_keys,
)
from ..storage.errors import ObjectNotFound, StorageError


def key_file() -> Path:
    """The master key file; rotation and the checks need the file provider."""
    if not isinstance(keyring.provider(), keyring.FileKeyProvider):
        raise KeyUnavailable(
            f"The master key comes from {settings.HOLDFAST_KEY_PROVIDER}, not a key file: "
            "rotate and check it with that provider's own tools."
        )
    return Path(settings.HOLDFAST_KEY_FILE)


def retired_key_path(path: Path, master_key_id: str) -> Path:
    return path.with_name(f"{path.name}.retired-{master_key_id}")


# Rotation ----------------------------------------------------------------------------------


@dataclass
class RotateResult:
    old_id: str
    new_id: str
    resumed: bool  # `.next` was there: an interrupted rotation was finished
    rewrapped: int = 0  # vault data keys rewrapped in the database by this run
    already: int = 0  # vault data keys wrapped by the new key already (a resumed run)
    stored_copies: int = 0  # keys/ objects written beside vault data
    anchor_keys: int = 0  # anchor stores' keys written under the new master key
    retired: Path = field(default_factory=Path)


@dataclass(frozen=True)
class _VaultKey:
    vault: Vault
    key: DataKey
    by_new: bool


def _unwrap_with(wrapped: WrappedKey, masters: list[MasterKey], what: str) -> MasterKey:
    for master in masters:
        if master.key_id == wrapped.master_key_id:
            return master
    have = " or ".join(f"{m.key_id} ({m.source})" for m in masters)
    raise KeyUnavailable(
        f"{sentence_start(what)} is wrapped by master key {wrapped.master_key_id}, but the "
        f"key file holds {have}: this is not the master key of this installation. Put the "
        "right key file back (HOLDFAST_KEY_FILE); nothing was changed."
    )


def _vault_keys(masters: list[MasterKey]) -> list[_VaultKey]:
    """Every vault's data key, opened with one of ``masters`` (`KeyUnavailable` otherwise)."""
    found = []
    for vault in Vault.objects.exclude(data_key_id="").order_by("pk"):
        what = f"vault {vault.name}'s data key"
        wrapped = WrappedKey.from_json(vault.data_key, where=what)
        master = _unwrap_with(wrapped, masters, what)
        key = master.unwrap(wrapped, what)
        if key.key_id != vault.data_key_id:
            raise KeyUnavailable(f"{sentence_start(what)} unwraps to another key than its vault's.")
        found.append(_VaultKey(vault, key, by_new=master is not masters[0]))
    return found


def _anchor_backends() -> list[tuple[str, Backend]]:
    stores = [cast(BackendAnchorStore, store) for store in anchor_stores(remote=True)]
    return [(store.name, store.make_backend()) for store in stores]


def _anchor_keys(
    backends: list[tuple[str, Backend]], masters: list[MasterKey]
) -> list[tuple[Backend, DataKey]]:
    """Each anchor store's own key, opened with ``masters`` (stores with none yet left out)."""
    return [
        (inner, open_stored_key(inner, masters)[0])
        for _name, inner in backends
        if stored_keys(inner)
    ]


def _key_retention(inner: Backend, name: str) -> Retention | None:
    """The lock of a key object, to give its successor (None: not locked)."""
    if not inner.supports_object_lock:
        return None
    try:
        lock = inner.lock_of(name)
    except ObjectNotFound:
        return None
    if lock is None or lock.mode is None or lock.until is None:
        return None
    return Retention(lock.mode, lock.until)


def copy_key(inner: Backend, key: DataKey, old: MasterKey, new: MasterKey) -> bool:
    """Put ``key`` wrapped by ``new`` beside a store's data, locked at least as long as its
    copy under ``old``; an object there already must open to the same key. Whether one was
    written."""
    name = key_object_name(new.key_id)
    retention = _key_retention(inner, key_object_name(old.key_id))
    written = inner.put_if_absent(name, new.wrap(key).to_json().encode(), retention)
    if not written:
        there = WrappedKey.from_json(inner.get(name), where=f"{inner!r} {name}")
        if new.unwrap(there, f"the key kept at {inner!r} {name}").key_id != key.key_id:
            raise KeyUnavailable(f"{inner!r} {name} holds another data key; nothing was changed.")
        if retention is not None:
            inner.extend_retention(name, retention)
    return written


def _store_copies(vault: Vault, key: DataKey, old: MasterKey, new: MasterKey) -> int:
    """The vault's data key under ``new`` in each tier that keeps one under a master key."""
    written = 0
    for inner in locations.raw_stored_tiers(vault).values():
        if any(True for _ in inner.list(KEYS_PREFIX)):
            written += copy_key(inner, key, old, new)
    return written


def _rewrap(
    result: RotateResult, keys: list[_VaultKey], old: MasterKey, new: MasterKey, actor: Any
) -> None:
    """Steps 3 and 4 for ``keys`` (those wrapped by the old key), audited once."""
    todo = [item for item in keys if not item.by_new]
    result.already += len(keys) - len(todo)
    for item in todo:
        result.stored_copies += _store_copies(item.vault, item.key, old, new)

    def change(check: Check) -> int:
        done = 0
        for item in todo:
            # Compare-and-set: a row rewrapped meanwhile (another rotation) is left alone.
            done += Vault.objects.filter(
                pk=item.vault.pk, data_key_id=item.key.key_id, data_key=item.vault.data_key
            ).update(data_key=new.wrap(item.key).to_json())
        return done

    result.rewrapped += gate.execute(
        "master_key_rotate",
        actor=actor,
        change=change,
        target=f"master key {new.key_id}",
        before={"master_key_id": old.key_id},
        after=lambda done: {
            "master_key_id": new.key_id,
            "rewrapped": done,
            "stored_copies": result.stored_copies,
            "anchor_keys": result.anchor_keys,
        },
    )


def _retire(path: Path, old: MasterKey, next_path: Path) -> Path:
    """Keep the old key file as ``<file>.retired-<id>`` (0600) and move ``.next`` into its
    place in one rename: a reader sees the old key or the new one, never no key."""
    retired = retired_key_path(path, old.key_id)
    try:
        os.link(path, retired)
    except FileExistsError:
        if read_master_key(retired).key_id != old.key_id:
            raise KeyUnavailable(f"{retired} holds another key; it is left as it is.") from None
    os.chmod(retired, stat.S_IRUSR | stat.S_IWUSR)
    os.replace(next_path, path)
    fsync_dir(path.parent)
    return retired


def master_key_rotate(*, actor: Any = None) -> RotateResult:
    """Rotate the master key (see the module docstring); `KeyUnavailable` with a sentence
    when the key file is missing, malformed or not the key the vaults need."""
    path = key_file()
    next_path = keyring.next_key_path(path)
    old = read_master_key(path)
    masters = [old]
    if next_path.exists():
        masters.append(read_master_key(next_path))
    keys = _vault_keys(masters)
    anchors = _anchor_backends()
    anchor_keys = _anchor_keys(anchors, masters)
    new = masters[1] if len(masters) > 1 else create_master_key_file(next_path)
    result = RotateResult(old.key_id, new.key_id, resumed=len(masters) > 1)
    for inner, key in anchor_keys:
        result.anchor_keys += copy_key(inner, key, old, new)
    _rewrap(result, keys, old, new, actor)
    result.retired = _retire(path, old, next_path)
    # A vault created while this ran may have had its key wrapped by the old master key.
    late = [item for item in _vault_keys([old, new]) if not item.by_new]
    if late:
        _rewrap(result, late, old, new, actor)
    for inner, key in _anchor_keys(anchors, [new, old]):
        result.anchor_keys += copy_key(inner, key, old, new)
    return result


# Checks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VaultCheck:
    vault: str
    ok: bool
    message: str


@dataclass
class CheckResult:
    master_key_id: str
    warnings: list[str]
    vaults: list[VaultCheck]

    @property
    def failed(self) -> list[VaultCheck]:
        return [check for check in self.vaults if not check.ok]


def _key_file_warnings(path: Path) -> list[str]:
    warnings = []
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode != 0o600:
        warnings.append(
            f"The master key file {path} has mode {mode:04o}: make it 0600 (chmod 600 {path}), "
            "readable by the user Holdfast runs as only."
        )
    if keyring.next_key_path(path).exists():
        warnings.append(
            f"A rotation is unfinished ({keyring.next_key_path(path)} exists): run "
            "`manage.py keys rotate` to finish it."
        )
    return warnings


def _check_copies(vault: Vault, key: DataKey, master: MasterKey) -> None:
    """Each tier holding sealed data keeps the data key under the current master key."""
    for tier, inner in locations.raw_stored_tiers(vault).items():
        kept = any(True for _ in inner.list(KEYS_PREFIX))
        if not kept and (vault.plaintext_objects or not any(True for _ in inner.list(""))):
            continue  # nothing sealed there yet
        name = key_object_name(master.key_id)
        try:
            wrapped = WrappedKey.from_json(inner.get(name), where=f"{tier} tier {name}")
        except ObjectNotFound:
            raise KeyUnavailable(
                f"its {tier} tier keeps no copy of its data key under master key "
                f"{master.key_id} ({name}): the store could not be read with the master key "
                "alone; run `manage.py keys rotate` to write the copies again"
            ) from None
        if master.unwrap(wrapped, f"the {tier} tier's copy").key_id != key.key_id:
            raise KeyUnavailable(f"its {tier} tier's copy of the data key is another key")


def _one_point(vault: Vault) -> str:
    """Read one point's manifest and first chunk through the vault's sealed store."""
    store = locations.vault_store(vault)
    stored = set(store.points())
    rows = RecoveryPoint.objects.filter(vault=vault).exclude(storage_key="")
    keys = [k for k in rows.order_by("-created_at").values_list("storage_key", flat=True)]
    point = next((k for k in keys if k in stored), None) or max(stored, default=None)
    if point is None:
        archive = locations.raw_stored_tiers(vault).get("archive")
        if archive is not None and any(True for _ in archive.list("manifests/")):
            archived = locations.archive_store(vault)
            point = archived.points()[-1]
            archived.manifest(point)
            return f"archived point {point}'s manifest decrypts"
        return "no point to read yet"
    manifest = store.manifest(point)
    if not manifest.chunks:
        return f"point {point}'s manifest decrypts (it names no chunk)"
    digest, size = next(iter(manifest.chunks.items()))
    store.read_chunk(digest, size)
    return f"point {point}'s manifest and first chunk decrypt"


def _check_vault(vault: Vault, master: MasterKey) -> VaultCheck:
    if not vault.data_key_id:
        return VaultCheck(
            vault.name,
            True,
            "no data key yet: its objects are from before encryption "
            f"(`manage.py keys encrypt-vault {vault.name}`)",
        )
    try:
        key, _wrapped = keyring.data_key(vault)
        _check_copies(vault, key, master)
        read = _one_point(vault)
    except (StorageError, OSError) as exc:
        return VaultCheck(vault.name, False, str(exc))
    note = " (it still holds objects from before encryption)" if vault.plaintext_objects else ""
    return VaultCheck(vault.name, True, f"data key {key.key_id} unwraps; {read}{note}")


def keys_check() -> CheckResult:
    """Every vault's data key unwraps, its copies beside the data open with the master key,
    and one point per vault decrypts. Reads only; `KeyUnavailable` for an unusable key file."""
    path = key_file()
    master = read_master_key(path)
    vaults = [_check_vault(vault, master) for vault in Vault.objects.order_by("name")]
    return CheckResult(master.key_id, _key_file_warnings(path), vaults)


def vault_data_key_create(vault: Vault) -> None:
    """Give a vault from before encryption its data key, wrapped by the master key, on first
    use (vaults made since are born with one: `keyring.give_data_key`). Two processes racing
    here both end with the one that was written first; only that one is audited as made."""
    made: dict[str, str] = {}

    def change(check: Check) -> int:
        key = DataKey.generate()
        wrapped = keyring.master_key().wrap(key)
        made.update(key_id=key.key_id, master_key_id=wrapped.master_key_id)
        return Vault.objects.filter(pk=vault.pk, data_key_id="").update(
            data_key=wrapped.to_json(), data_key_id=key.key_id
        )

    gate.execute(
        "vault_data_key_create",
        actor=None,
        vault=vault,
        vault_name=vault.name,
        target=f"vault:{vault.name}",
        change=change,
        after=lambda written: {**made, "written": bool(written)},
    )
