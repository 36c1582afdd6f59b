"""Backup and restore throughput to S3 (moto and Ceph RGW) next to the local backend, same run.

    make bench-s3        # or: .venv/bin/python bench/s3.py [--mib 256] [--repeat 3]

Two S3 servers on loopback, the ones the test suite uses (tests/s3server.py): moto in server
mode (a single-process Python server; tests/moto_server.py fixes its ListObjectVersions, which
copied and leaked the whole bucket per call) and a throwaway single-node Ceph RGW 16.2
(memstore OSD, started with scripts/ceph-rgw/start-rgw.sh; its column reads "n/a" with the
reason when the Ceph packages are missing). The figures measure Holdfast's S3 path (boto3;
per chunk a HEAD, a conditional PUT with Object Lock retention and a SHA-256 checksum, the
ETag check, and the version listing that guards against stacked versions) against real
servers on the same two cores, not a production object store: read them as a lower bound for
S3 and as the cost of the S3 protocol against the local disk. Every backend backs up the same
page-cache-warm dataset (bench/run.py generates it) in the same round; the S3 stores write
every object with GOVERNANCE retention, as an `enabled` vault does. Medians of --repeat
rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import MIB, generate, timed  # noqa: E402

from tests.s3server import ceph_missing, ceph_reaper, start_ceph, stop_ceph  # noqa: E402
from vaults.storage import LocalBackend, VaultStore  # noqa: E402
from vaults.storage.backends import GOVERNANCE, Retention  # noqa: E402
from vaults.storage.crypto import sealed  # noqa: E402
from vaults.storage.s3 import S3Backend  # noqa: E402
from vaults.storage.s3_client import make_client, parse_location  # noqa: E402

SERVERS = ("local", "moto", "ceph")


@contextmanager
def moto() -> Iterator[Any]:
    import socket
    import subprocess
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.moto_server", "-H", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("moto_server did not start") from None
                time.sleep(0.05)
        yield make_client(endpoint_url=f"http://127.0.0.1:{port}", access_key="b", secret_key="b")
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def ceph() -> Iterator[Any]:
    directory = Path(tempfile.mkdtemp(prefix="hf-rgw-bench-"))
    reaper = ceph_reaper(directory)
    try:
        env = start_ceph(directory)
        yield make_client(
            endpoint_url=env["S3_ENDPOINT"],
            access_key=env["S3_ACCESS_KEY"],
            secret_key=env["S3_SECRET_KEY"],
        )
    finally:
        stop_ceph(directory)
        assert reaper.stdin is not None
        reaper.stdin.close()
        reaper.wait(timeout=120)


def one_round(work: Path, data: Path, clients: dict[str, Any], logical: int) -> dict[str, float]:
    retention = Retention(GOVERNANCE, datetime.now(UTC) + timedelta(days=1))
    run = uuid.uuid4().hex[:10]
    stores = {"local": VaultStore(sealed(LocalBackend(work / f"local-{run}")))}
    for name, client in clients.items():
        bucket = f"bench-{run}"
        client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
        stores[name] = VaultStore(
            sealed(S3Backend(client, parse_location(f"s3://{bucket}/vault/std")))
        )
    figures: dict[str, float] = {}
    for name, store in stores.items():
        lock = retention if name != "local" else None
        seconds = timed(lambda store=store, lock=lock: store.backup(data, "p1", retention=lock))
        figures[f"{name}_backup"] = logical / seconds / MIB
        target = work / f"restore-{name}-{run}"
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
    missing = ceph_missing()
    with ExitStack() as stack:
        clients = {"moto": stack.enter_context(moto())}
        if missing is None:
            clients["ceph"] = stack.enter_context(ceph())
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="holdfast-bench-s3-")))
        data = work / "data"
        logical = generate(data, args.mib / 1024)
        print(f"dataset: {logical / MIB:.0f} MiB in {sum(1 for _ in data.rglob('*'))} entries")
        rounds = [one_round(work, data, clients, logical) for _ in range(args.repeat)]
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(f"\nmedians of {args.repeat} rounds, MB/s of logical data (cpu count {os.cpu_count()})")
    print(
        f"{'measure':<10} {'local':>8} {'s3 (moto)':>10} {'s3 (ceph)':>10}"
        f" {'moto/local':>11} {'ceph/local':>11}"
    )
    for what in ("backup", "restore"):
        local = median[f"local_{what}"]
        cells = [f"{local:>8.1f}"]
        ratios = []
        for name in ("moto", "ceph"):
            value = median.get(f"{name}_{what}")
            cells.append(f"{value:>10.1f}" if value else f"{'n/a':>10}")
            ratios.append(f"{value / local:>10.2f}x" if value else f"{'n/a':>11}")
        print(f"{what:<10} {' '.join(cells)} {' '.join(ratios)}")
    if missing is not None:
        print(f"\nceph: n/a, {missing}")


if __name__ == "__main__":
    main()
