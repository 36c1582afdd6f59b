"""GC of one local store holding N dead chunks: time and fsyncs (issue 20, "GC pays one
directory fsync per deleted chunk"). No database.

    PYTHONPATH=. .venv/bin/python bench/gc_fsyncs.py [N]          # this checkout
    PYTHONPATH=/tmp/holdfast-main .venv/bin/python bench/gc_fsyncs.py 5000   # another

Chunks no manifest names (what a backup killed long ago leaves) are written under a temporary
directory, then one GC deletes them, counting ``os.fsync`` calls (files and directories); then
a second GC, with nothing left to delete.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def main(count: int) -> None:
    from vaults.storage import LocalBackend, VaultStore
    from vaults.storage import gc as gc_module
    from vaults.storage.chunks import chunk_key
    from vaults.storage.crypto import sealed

    with tempfile.TemporaryDirectory(prefix="holdfast-gc-") as root:
        store = VaultStore(sealed(LocalBackend(Path(root))))
        for _ in range(count):
            store.backend.put(chunk_key(os.urandom(32).hex()), b"left by a dead backup")
        fsyncs = [0]
        real = os.fsync

        def counting(fd: Any) -> None:
            fsyncs[0] += 1
            real(fd)

        os.fsync = counting
        try:
            for label in ("gc", "again"):
                fsyncs[0] = 0
                started = time.perf_counter()
                result = store.gc()
                seconds = time.perf_counter() - started
                print(
                    f"{label}: deleted {result.deleted_chunks} of {count} dead chunks in "
                    f"{seconds:.3f} s, {fsyncs[0]} fsyncs ({gc_module.__file__})"
                )
        finally:
            os.fsync = real
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
