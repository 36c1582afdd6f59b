"""Benchmark Holdfast's data plane against restic on the same data, in the same run.

    make bench            # or: .venv/bin/python bench/run.py [--gib 1.1] [--repeat 3] [--keep]

Generates a dataset under /tmp (many small files, some large ones, duplicates; partly
compressible), then measures for Holdfast's VaultStore and, when installed, restic:
first backup MB/s, second backup MB/s after changing about 1% of the data, restore MB/s,
and bytes stored. Throughput is logical bytes of the source divided by wall time. Both
tools read the same page-cache-warm files; restic runs as a subprocess (its start-up time
counts, about 0.1 s). Holdfast's second backup names the first as its parent, as the job
runner does, and restic picks its parent snapshot itself. Each round starts from a fresh
copy of the dataset and empty repositories; the report gives the median of `--repeat`
rounds (default 3), which damps the noise of a shared machine. After copying the dataset
the bench waits out Holdfast's timestamp slack (2 s, untimed, for both tools): files whose
ctime is that close to a parent backup's start are read again by design.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vaults.storage import LocalBackend, VaultStore  # noqa: E402
from vaults.storage.crypto import sealed  # noqa: E402
from vaults.storage.store import DEFAULT_TIMESTAMP_SLACK  # noqa: E402

MIB = 1024 * 1024
WORDS = [
    "backup",
    "vault",
    "restore",
    "chunk",
    "manifest",
    "policy",
    "retention",
    "immutable",
    "lease",
    "archive",
    "tier",
    "snapshot",
    "verify",
    "digest",
    "schedule",
    "worker",
    "compress",
    "dedup",
    "window",
    "slot",
    "expiry",
    "point",
    "item",
]


def _text_block(rng: random.Random, size: int) -> bytes:
    out: list[str] = []
    length = 0
    while length < size:
        line = " ".join(rng.choice(WORDS) for _ in range(12)) + f" {rng.randrange(10**9)}\n"
        out.append(line)
        length += len(line)
    return "".join(out).encode()[:size]


def _piece(rng: random.Random, text: bytes, size: int) -> bytes:
    """Half incompressible, half text: roughly what a file server holds."""
    half = size // 2
    start = rng.randrange(0, len(text) - (size - half))
    return os.urandom(half) + text[start : start + size - half]


def generate(data: Path, gib: float, seed: int = 7) -> int:
    rng = random.Random(seed)
    text = _text_block(rng, 8 * MIB)
    total = 0
    target = int(gib * 1024 * MIB)
    large_bytes = int(target * 0.55)
    dup_bytes = int(target * 0.15)
    small_bytes = target - large_bytes - dup_bytes
    # Large files: 64 MiB each.
    large_dir = data / "large"
    large_dir.mkdir(parents=True)
    n_large = max(1, large_bytes // (64 * MIB))
    for i in range(n_large):
        with open(large_dir / f"disk-{i:02d}.img", "wb") as out:
            for _ in range(64):
                out.write(_piece(rng, text, MIB))
        total += 64 * MIB
    # Duplicates: copies of large files under other names.
    dup_dir = data / "copies"
    dup_dir.mkdir()
    copied = 0
    i = 0
    while copied < dup_bytes:
        source = large_dir / f"disk-{i % n_large:02d}.img"
        shutil.copyfile(source, dup_dir / f"copy-{i:02d}.img")
        copied += source.stat().st_size
        i += 1
    total += copied
    # Many small files, 1-48 KiB, in a tree 3 levels deep.
    written = 0
    index = 0
    while written < small_bytes:
        folder = data / "small" / f"d{index % 16:02d}" / f"e{(index // 16) % 32:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.randrange(1024, 48 * 1024)
        (folder / f"file-{index:06d}.txt").write_bytes(_piece(rng, text, size))
        written += size
        index += 1
    total += written
    return total


def change_one_percent(data: Path, seed: int = 11) -> int:
    """Rewrite ~0.5% of the bytes inside large files and ~0.5% as small files."""
    rng = random.Random(seed)
    total = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    budget = total // 200
    changed = 0
    large = sorted((data / "large").iterdir())
    while changed < budget:
        path = rng.choice(large)
        size = path.stat().st_size
        offset = rng.randrange(0, size - MIB)
        with open(path, "r+b") as out:
            out.seek(offset)
            out.write(os.urandom(256 * 1024))
        changed += 256 * 1024
    small = sorted((data / "small").rglob("*.txt"))
    budget += total // 200
    while changed < budget:
        path = rng.choice(small)
        blob = os.urandom(path.stat().st_size)
        path.write_bytes(blob)
        changed += len(blob)
    return changed


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def drop_caches() -> None:
    """Best effort: without root (or in a container) both tools simply read warm files."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass


def bench_holdfast(work: Path, data: Path, logical: int, change) -> dict[str, float]:  # type: ignore[no-untyped-def]
    repo = work / "holdfast-repo"
    # Encrypted, as every vault is: AES-256-GCM per object, keyed BLAKE3 chunk ids.
    store = VaultStore(sealed(LocalBackend(repo)))
    drop_caches()
    first = timed(lambda: store.backup(data, "p1"))
    stored_first = du(repo)
    change()
    drop_caches()
    second_result = {}
    second = timed(lambda: second_result.setdefault("r", store.backup(data, "p2", parent="p1")))
    target = work / "holdfast-restore"
    drop_caches()
    restore = timed(lambda: store.restore("p2", target, allowed_roots=[work]))
    return {
        "first_s": first,
        "second_s": second,
        "restore_s": restore,
        "stored_first": stored_first,
        "stored_total": du(repo),
        "second_new": second_result["r"].stored_bytes,
        "second_read": second_result["r"].read_bytes,
    }


def bench_restic(work: Path, data: Path, change) -> dict[str, float] | None:  # type: ignore[no-untyped-def]
    restic = shutil.which("restic")
    if restic is None:
        return None
    repo = work / "restic-repo"
    env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(repo)}

    def run(*args: str) -> None:
        subprocess.run([restic, "--no-cache", *args], env=env, check=True, capture_output=True)

    version = subprocess.run([restic, "version"], capture_output=True, text=True).stdout
    init = ["init"]
    if "0.1" in version or "0.2" in version:
        init += ["--repository-version", "2"]  # compression (zstd), restic >= 0.14
    run(*init)
    drop_caches()
    first = timed(lambda: run("backup", "--host", "bench", str(data)))
    stored_first = du(repo)
    change()
    drop_caches()
    second = timed(lambda: run("backup", "--host", "bench", str(data)))
    target = work / "restic-restore"
    drop_caches()
    restore = timed(lambda: run("restore", "latest", "--target", str(target)))
    return {
        "first_s": first,
        "second_s": second,
        "restore_s": restore,
        "stored_first": stored_first,
        "stored_total": du(repo),
        "second_new": du(repo) - stored_first,
        "version": version.strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.1, help="dataset size (default 1.1)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="holdfast-bench-", dir="/tmp"))
    try:
        print(f"generating {args.gib} GiB under {work} ...", flush=True)
        pristine = work / "pristine"
        logical = generate(pristine, args.gib)
        files = sum(1 for p in pristine.rglob("*") if p.is_file())
        print(f"dataset: {logical / MIB:.0f} MiB in {files} files", flush=True)
        # Each tool gets its own identical copy, changed identically, so neither benefits
        # from the other's change detection state.
        rounds: dict[str, list[dict[str, float]]] = {}
        for round_ in range(1, args.repeat + 1):
            for name in ("holdfast", "restic"):
                data = work / f"data-{name}"
                subprocess.run(["cp", "-a", str(pristine), str(data)], check=True)
                # Untimed, for both tools: Holdfast re-reads files whose ctime is within
                # the timestamp slack of the parent's start (docs/storage.md); a real
                # source is not written a second before its backup.
                time.sleep(DEFAULT_TIMESTAMP_SLACK + 0.5)

                def change(data: Path = data) -> None:
                    change_one_percent(data)

                print(f"round {round_}/{args.repeat}: running {name} ...", flush=True)
                if name == "holdfast":
                    outcome = bench_holdfast(work, data, logical, change)
                else:
                    outcome = bench_restic(work, data, change)
                    if outcome is None:
                        print("restic is not installed (apt-get install restic): skipped")
                if outcome is not None:
                    rounds.setdefault(name, []).append(outcome)
                    print(
                        "  "
                        + ", ".join(
                            f"{k} {v:.2f}" if k.endswith("_s") else f"{k} {v / MIB:.1f} MiB"
                            for k, v in outcome.items()
                            if isinstance(v, int | float)
                        ),
                        flush=True,
                    )
                for leftover in (data, *work.glob(f"{name}-*")):
                    shutil.rmtree(leftover, ignore_errors=True)
        report({name: median_of(runs) for name, runs in rounds.items()}, logical)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    merged: dict[str, float] = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, int | float):
            merged[key] = statistics.median(run[key] for run in runs)
    return merged


def report(results: dict[str, dict[str, float]], logical: int) -> None:
    rows = [
        ("first backup MB/s", lambda r: logical / r["first_s"] / 1e6, "higher"),
        ("second backup (1% changed) MB/s", lambda r: logical / r["second_s"] / 1e6, "higher"),
        ("restore MB/s", lambda r: logical / r["restore_s"] / 1e6, "higher"),
        ("stored after first backup MiB", lambda r: r["stored_first"] / MIB, "lower"),
        ("stored by second backup MiB", lambda r: r["second_new"] / MIB, "lower"),
        ("stored total MiB", lambda r: r["stored_total"] / MIB, "lower"),
    ]
    ours, theirs = results["holdfast"], results.get("restic")
    print()
    print(f"{'measure':34} {'holdfast':>10} {'restic':>10} {'ratio':>8}")
    summary = {}
    for label, value, better in rows:
        a = value(ours)
        b = value(theirs) if theirs else None
        ratio = a / b if b else None
        summary[label] = {"holdfast": round(a, 1), "restic": b and round(b, 1), "ratio": ratio}
        print(
            f"{label:34} {a:10.1f} {b if b is None else f'{b:10.1f}':>10} "
            f"{'' if ratio is None else f'{ratio:7.2f}x':>8}  ({better} is better)"
        )
    if theirs:
        print(f"\nrestic: {theirs['version']}; ratio = holdfast / restic")
    print("both encrypt: holdfast AES-256-GCM per object (keyed BLAKE3 ids), restic AES-256-CTR")
    print("+ Poly1305-AES")
    print(f"holdfast's second backup read {ours['second_read'] / MIB:.1f} MiB of source files")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
