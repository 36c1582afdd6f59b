"""Backup and restore throughput to the S3 backend next to the local backend, same run.

    make bench-s3        # or: .venv/bin/python bench/s3.py [--mib 256] [--repeat 3]

The S3 server is moto in server mode on loopback (the one the test suite uses), so the
figures measure Holdfast's S3 path (boto3, one PUT/HEAD per chunk, Object Lock retention
and a SHA-256 checksum on every write) against a single-process Python S3 server, not a
production object store: read them as a lower bound for S3 and as the cost of the S3
protocol against the local disk. Both backends back up the same page-cache-warm dataset
(bench/run.py generates it); the S3 store writes every object with GOVERNANCE retention,
as an `enabled` vault does. Medians of --repeat rounds.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import MIB, generate, timed  # noqa: E402

from vaults.storage import LocalBackend, VaultStore  # noqa: E402
from vaults.storage.backends import GOVERNANCE, Retention  # noqa: E402
from vaults.storage.s3 import S3Backend, make_client, parse_location  # noqa: E402


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise SystemExit("moto_server did not start") from None
            time.sleep(0.05)


def one_round(work: Path, data: Path, client: object, logical: int) -> dict[str, float]:
    retention = Retention(GOVERNANCE, datetime.now(UTC) + timedelta(days=1))
    bucket = f"bench-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)  # type: ignore[attr-defined]
    stores = {
        "local": VaultStore(LocalBackend(work / f"local-{bucket}")),
        "s3": VaultStore(S3Backend(client, parse_location(f"s3://{bucket}/vault/standard"))),
    }
    figures: dict[str, float] = {}
    for name, store in stores.items():
        lock = retention if name == "s3" else None
        seconds = timed(lambda store=store, lock=lock: store.backup(data, "p1", retention=lock))
        figures[f"{name}_backup"] = logical / seconds / MIB
        target = work / f"restore-{name}-{bucket}"
        seconds = timed(
            lambda store=store, target=target: store.restore("p1", target, allowed_roots=[work])
        )
        figures[f"{name}_restore"] = logical / seconds / MIB
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="dataset size in MiB (default 256)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    args = parser.parse_args()
    moto, endpoint = start_moto()
    try:
        client = make_client(endpoint_url=endpoint, access_key="bench", secret_key="bench")
        with tempfile.TemporaryDirectory(prefix="holdfast-bench-s3-") as tmp:
            work = Path(tmp)
            data = work / "data"
            logical = generate(data, args.mib / 1024)
            print(f"dataset: {logical / MIB:.0f} MiB in {sum(1 for _ in data.rglob('*'))} entries")
            rounds = [one_round(work, data, client, logical) for _ in range(args.repeat)]
    finally:
        moto.terminate()
        moto.wait(timeout=10)
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(f"\nmedians of {args.repeat} rounds, MB/s of logical data (cpu count {os.cpu_count()})")
    print(f"{'measure':<10} {'local':>10} {'s3 (moto)':>12} {'s3/local':>10}")
    for what in ("backup", "restore"):
        local, s3 = median[f"local_{what}"], median[f"s3_{what}"]
        print(f"{what:<10} {local:>10.1f} {s3:>12.1f} {s3 / local:>9.2f}x")


if __name__ == "__main__":
    main()
