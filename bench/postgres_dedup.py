"""How much of a second pg_dump a store writes, by dump compression and chunk size: the
measurement behind ``vaults/storage/stream.py``'s choice (docs/workloads.md).

    .venv/bin/python bench/postgres_dedup.py                 # PG* variables name the server
    .venv/bin/python bench/postgres_dedup.py --record bench/results/postgres-dedup-$(date -u +%F).md

Creates a scratch database (``holdfast_bench_dedup``, dropped at the end) of three tables,
1,000,000 rows in all, dumps it, changes 1% of its rows (10,000 consecutive rows of one
table; then, on a copy, 1 row in 100 of every table), dumps again, and cuts both dumps with
Holdfast's own chunker and chunk encoding (zstd): the second dump's chunks the first lacks
are what a second backup stores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vaults.storage.chunks import (
    AVG_SIZE,
    MAX_SIZE,
    MIN_SIZE,
    SMALL_AVG_SIZE,
    SMALL_MAX_SIZE,
    SMALL_MIN_SIZE,
    StreamChunker,
    encode_chunk,
)

DB = "holdfast_bench_dedup"
SIZES = {
    "1 MiB": (MIN_SIZE, AVG_SIZE, MAX_SIZE),
    "256 KiB": (SMALL_MIN_SIZE, SMALL_AVG_SIZE, SMALL_MAX_SIZE),
    "64 KiB": (16 * 1024, 64 * 1024, 256 * 1024),
}
DUMPS = {"uncompressed (-Z0)": ["--compress=0"], "pg_dump default (gzip)": []}


def admin(dbname: str = "postgres") -> psycopg.Connection[object]:
    return psycopg.connect(dbname=dbname, autocommit=True)


def create(name: str) -> None:
    with admin() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with admin(name) as conn:
        conn.execute(
            "CREATE TABLE customers AS SELECT g AS id, 'name-' || g AS name, md5(g::text) AS "
            "email, (g * 7) % 1000 AS region FROM generate_series(1, 200000) g"
        )
        conn.execute(
            "CREATE TABLE orders AS SELECT g AS id, (g % 200000) + 1 AS customer_id, "
            "((g * 13) % 10007) / 100.0 AS amount, timestamp '2026-01-01' + g * interval "
            "'1 second' AS at FROM generate_series(1, 700000) g"
        )
        conn.execute(
            "CREATE TABLE events AS SELECT g AS id, repeat(md5(g::text), 2) AS payload "
            "FROM generate_series(1, 100000) g"
        )
        for table in ("customers", "orders", "events"):
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(sql.Identifier(table))
            )


def dump(name: str, options: list[str]) -> bytes:
    return subprocess.run(
        ["pg_dump", "--format=custom", *options, f"--dbname=dbname={name}"],
        check=True,
        capture_output=True,
    ).stdout


def chunks(data: bytes, sizes: tuple[int, int, int]) -> dict[bytes, int]:
    """Each distinct chunk (by content) and its stored size (zstd, as the store encodes)."""
    chunker = StreamChunker(*sizes)
    cut = [bytes(c) for _o, c in chunker.feed(data)] + [bytes(c) for _o, c in chunker.finish()]
    return {c: sum(map(len, encode_chunk(c))) for c in cut}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    copy = f"{DB}_scattered"
    create(DB)
    try:
        before = {label: dump(DB, options) for label, options in DUMPS.items()}
        with admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(copy), sql.Identifier(DB)
                )
            )
        with admin(DB) as conn:
            conn.execute("UPDATE orders SET amount = amount + 1 WHERE id <= 10000")
        with admin(copy) as conn:
            for table, column in (("customers", "region"), ("orders", "amount")):
                conn.execute(
                    sql.SQL("UPDATE {} SET {} = {} + 1 WHERE id % 100 = 0").format(
                        sql.Identifier(table), sql.Identifier(column), sql.Identifier(column)
                    )
                )
            conn.execute("UPDATE events SET payload = upper(payload) WHERE id % 100 = 0")
        after = {("consecutive", label): dump(DB, options) for label, options in DUMPS.items()} | {
            ("scattered", label): dump(copy, options) for label, options in DUMPS.items()
        }
    finally:
        with admin() as conn:
            for name in (DB, copy):
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
    lines = [
        "| 1% of rows changed | chunks (average) | dump | dump size | first point stored "
        "| second point stored | chunks |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (change, label), second in after.items():
        for size_label, sizes in SIZES.items():
            first_chunks = chunks(before[label], sizes)
            second_chunks = chunks(second, sizes)
            first_stored = sum(first_chunks.values())
            new = sum(n for c, n in second_chunks.items() if c not in first_chunks)
            lines.append(
                f"| {change} | {size_label} | {label} | {len(second) / 1e6:.1f} MB "
                f"| {first_stored / 1e6:.1f} MB | {new / 1e6:.2f} MB "
                f"({100 * new / first_stored:.1f}%) | {len(second_chunks)} |"
            )
    table = "\n".join(lines)
    print(table)
    if args.record:
        version = subprocess.run(["pg_dump", "--version"], capture_output=True, text=True)
        args.record.write_text(
            "# pg_dump deduplication by dump compression and chunk size\n\n"
            "`bench/postgres_dedup.py` on this machine (PostgreSQL "
            f"{version.stdout.split()[-1]}"
            "). A second backup stores the second dump's chunks the first lacks.\n\n"
            f"{table}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
