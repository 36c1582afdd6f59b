"""Replica copies (SPEC 3.10): a point copied local -> local and local -> S3 (moto on loopback),
first copy and after a 1% change, beside a full re-backup of the same data, same run.

    make bench-replica       # or: .venv/bin/python bench/replica.py [--gib 1] [--record FILE]

What it measures, per target (a second local store, an S3 bucket with Object Lock on moto):

1. **full re-backup**: the dataset backed up from scratch into a fresh store on the target,
   what a second, independent backup to the other region would cost (every byte read,
   chunked, hashed, compressed and written);
2. **first copy**: the source's point copied into an empty replica store
   (``vaults/storage/copy.py``: chunk objects sent as stored, each re-hashed);
3. **incremental copy**: after a 1% change (bench/run.py's ``change_one_percent``) and an
   incremental backup on the source, the new point copied into the replica that holds the
   first one: only the chunks it lacks travel.

MB/s are of the point's logical bytes over the wall time; "moved" is the bytes written to
the target (objects and manifest). The S3 stores write every object with GOVERNANCE
retention, as an ``enabled`` vault does. The check at the end is the issue's bar: the
incremental copy moves under 5% of the dataset's bytes and runs at least 3x faster than the
full re-backup to the same target. Exits non-zero when it is not met.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import MIB, change_one_percent, generate, timed  # noqa: E402
from s3 import moto  # noqa: E402

from vaults.storage import LocalBackend, VaultStore  # noqa: E402
from vaults.storage.backends import GOVERNANCE, Retention  # noqa: E402
from vaults.storage.copy import CopyResult, copy_point  # noqa: E402
from vaults.storage.crypto import sealed  # noqa: E402
from vaults.storage.s3 import S3Backend  # noqa: E402
from vaults.storage.s3_client import parse_location  # noqa: E402
from vaults.storage.store import DEFAULT_TIMESTAMP_SLACK  # noqa: E402


def stored(store: VaultStore) -> int:
    return store.stored_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="dataset size in GiB (default 1)")
    parser.add_argument("--record", type=Path, help="also write the table as markdown here")
    parser.add_argument("--no-s3", action="store_true", help="local -> local only")
    args = parser.parse_args()
    retention = Retention(GOVERNANCE, dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    rows: list[dict[str, Any]] = []
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="holdfast-replica-")))
        data = work / "data"
        logical = generate(data, args.gib)
        print(f"dataset: {logical / MIB:.0f} MiB in {sum(1 for _ in data.rglob('*'))} entries")
        # As bench/run.py: files changed within the timestamp slack of a backup's start are
        # read again by the next one (docs/storage.md); a real dataset is older than that.
        time.sleep(DEFAULT_TIMESTAMP_SLACK + 0.5)
        source = VaultStore(sealed(LocalBackend(work / "source")))
        seconds = timed(lambda: source.backup(data, "p1"))
        print(f"source backup: {logical / seconds / MIB:.1f} MB/s")

        def target(name: str) -> tuple[VaultStore, Retention | None]:
            if name == "local":
                return VaultStore(
                    sealed(LocalBackend(work / f"target-{uuid.uuid4().hex[:8]}"))
                ), None
            bucket = f"replica-{uuid.uuid4().hex[:10]}"
            client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
            location = parse_location(f"s3://{bucket}/vault/standard")
            return VaultStore(sealed(S3Backend(client, location))), retention

        targets = ["local"] if args.no_s3 else ["local", "moto"]
        client = None if args.no_s3 else stack.enter_context(moto())
        replicas: dict[str, VaultStore] = {}
        full: dict[str, tuple[float, int]] = {}
        for name in targets:
            fresh, lock = target(name)
            seconds = timed(
                lambda fresh=fresh, lock=lock: fresh.backup(data, "full", retention=lock)
            )
            full[name] = (seconds, stored(fresh))
            rows.append(row(name, "full re-backup", logical, seconds, stored(fresh)))
            replica, lock = target(name)
            replicas[name] = replica
            result: dict[str, CopyResult] = {}
            seconds = timed(
                lambda replica=replica, lock=lock, result=result: result.setdefault(
                    "r", copy_point(source, replica, "p1", retention=lock)
                )
            )
            rows.append(row(name, "first copy", logical, seconds, result["r"].bytes_moved))
            print(rows[-2]["line"], rows[-1]["line"], sep="\n", flush=True)
        changed = change_one_percent(data)
        time.sleep(DEFAULT_TIMESTAMP_SLACK + 0.5)
        second = source.backup(data, "p2", parent="p1")
        print(f"1% change: {changed / MIB:.1f} MiB rewritten; p2 logical {second.logical_bytes}")
        failures = []
        for name in targets:
            lock = retention if name != "local" else None
            result = {}
            seconds = timed(
                lambda name=name, lock=lock, result=result: result.setdefault(
                    "r", copy_point(source, replicas[name], "p2", retention=lock, parent="p1")
                )
            )
            moved = result["r"].bytes_moved
            rows.append(row(name, "incremental copy", second.logical_bytes, seconds, moved))
            print(rows[-1]["line"], flush=True)
            share = moved / second.logical_bytes
            speedup = full[name][0] / seconds
            rows[-1]["note"] = f"{share:.2%} of the bytes, {speedup:.1f}x the re-backup's speed"
            if share >= 0.05 or speedup < 3:
                failures.append(f"{name}: moved {share:.2%}, {speedup:.1f}x faster")
    table = render(rows, logical)
    print("\n" + table)
    if args.record:
        args.record.write_text(
            f"# bench-replica, {dt.date.today()} ({os.cpu_count()} CPUs)\n\n{table}\n"
        )
    if failures:
        raise SystemExit("the incremental copy missed the bar: " + "; ".join(failures))
    print("incremental copies: under 5% of the bytes moved, at least 3x the re-backup's speed")


def row(target: str, what: str, logical: int, seconds: float, moved: int) -> dict[str, Any]:
    speed = logical / seconds / MIB
    line = f"{target:<6} {what:<17} {seconds:>7.2f} s {speed:>8.1f} MB/s {moved / MIB:>9.1f} MiB"
    return {"target": target, "what": what, "seconds": seconds, "speed": speed,
            "moved": moved, "line": line, "note": ""}  # fmt: skip


def render(rows: list[dict[str, Any]], logical: int) -> str:
    lines = [
        f"Dataset {logical / MIB:.0f} MiB (bench/run.py's mix); MB/s of logical bytes.",
        "",
        "| target | what | seconds | MB/s | moved (MiB) | note |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {'local' if r['target'] == 'local' else 'S3 (moto)'} | {r['what']} "
            f"| {r['seconds']:.2f} | {r['speed']:.1f} | {r['moved'] / MIB:.1f} | {r['note']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
