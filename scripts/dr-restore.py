#!/usr/bin/env python3
"""Disaster recovery: restore a recovery point from a vault's store and the master key alone.

No database and no Django: only the vault's storage directory (its standard tier and,
for archived points, its archive tier), copied or mounted anywhere, and the master key file
that wrapped its data key. The store keeps its data key beside its data, wrapped by the
master key (``keys/data-key-<master key id>.json``); with the master key that opens it,
every manifest and chunk opens and is checked (AES-256-GCM with the object's name as
associated data, then the chunk's keyed BLAKE3). An S3 store is read the same way once
synced to a directory (``aws s3 sync s3://bucket/prefix/standard DIR``).

    scripts/dr-restore.py --key-file master.key --store DIR [--archive DIR] --list
    scripts/dr-restore.py --key-file master.key --store DIR [--archive DIR] \\
        --point ID --target NEW_DIR [--path SUB/PATH]

``--key-file`` may be given twice (a rotation in progress: the old and the new key).
``--plaintext`` reads a store from before encryption (no ``keys/``) or one partly converted
by ``keys encrypt-vault``; without it a plaintext object is refused as planted. The
target must not exist yet, or be empty; nothing is written anywhere else (an archived
point is unpacked into a temporary store first, removed afterwards).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vaults.storage import ArchiveStore, LocalBackend, StorageError, VaultStore
from vaults.storage.crypto import MasterKey, SealedBackend, open_store, read_master_key
from vaults.storage.manifest import Manifest


def open_backend(directory: Path, masters: list[MasterKey], plaintext: bool) -> SealedBackend:
    """The store in ``directory`` opened with the data key it keeps under ``keys/``; its
    plaintext objects read only with ``--plaintext`` (a store from before encryption)."""
    if not directory.is_dir():
        raise StorageError(f"There is no store at {directory}.")
    return open_store(LocalBackend(directory), masters, plaintext=plaintext)


def describe(tier: str, manifest: Manifest) -> str:
    created = datetime.fromtimestamp(manifest.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{manifest.point_id}\t{tier}\t{created} UTC\t{manifest.file_count} files\t"
        f"{manifest.logical_bytes} bytes\t{manifest.source}"
    )


def run(args: argparse.Namespace) -> int:
    masters = [read_master_key(Path(path)) for path in args.key_file]
    standard = VaultStore(open_backend(Path(args.store), masters, args.plaintext))
    archive = (
        ArchiveStore(open_backend(Path(args.archive), masters, args.plaintext))
        if args.archive
        else None
    )
    if args.list:
        for point_id in sorted(standard.points()):
            print(describe("standard", standard.manifest(point_id)))
        for point_id in sorted(archive.points() if archive else []):
            print(describe("archive", archive.manifest(point_id)))  # type: ignore[union-attr]
        return 0
    target = Path(args.target).absolute()
    if target.exists() and any(target.iterdir()):
        raise StorageError(f"The target {target} is not empty: give a new directory.")
    if standard.has_point(args.point):
        result = restore(standard, args.point, target, args.path)
    elif archive is not None and archive.has_point(args.point):
        # Unpacked into a temporary store sealed with the same data key (chunk ids are keyed).
        with tempfile.TemporaryDirectory(prefix="holdfast-dr-") as scratch:
            key = archive.backend.key
            unpacked = VaultStore(SealedBackend(LocalBackend(scratch), key))
            archive.rehydrate(args.point, unpacked)
            result = restore(unpacked, args.point, target, args.path)
    else:
        raise StorageError(f"There is no point {args.point!r} in the store(s) given (see --list).")
    print(f"Restored point {args.point} to {target}: {result}.")
    return 0


def restore(store: VaultStore, point_id: str, target: Path, sub_path: str) -> str:
    result = store.restore(point_id, target, allowed_roots=[target.parent], sub_path=sub_path)
    return (
        f"{result.files} files, {result.dirs} folders, {result.symlinks} symlinks, "
        f"{result.restored_bytes} bytes"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Restore a Holdfast recovery point from its store and the master key alone."
    )
    parser.add_argument("--key-file", action="append", required=True, help="master key file")
    parser.add_argument("--store", required=True, help="the vault's standard-tier directory")
    parser.add_argument("--archive", help="the vault's archive-tier directory")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--list", action="store_true", help="list the points in the store")
    action.add_argument("--point", help="the point to restore (its id, from --list)")
    parser.add_argument("--target", help="a new, empty directory to restore into")
    parser.add_argument("--path", default="", help="a file or folder inside the point")
    parser.add_argument(
        "--plaintext",
        action="store_true",
        help="the store is from before encryption or partly converted: read its plaintext "
        "objects too (never needed otherwise: they are refused as planted)",
    )
    args = parser.parse_args(argv)
    if args.point and not args.target:
        parser.error("--point needs --target")
    try:
        return run(args)
    except StorageError as exc:  # KeyUnavailable, ObjectTampered, CorruptChunk among them
        print(f"dr-restore: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
