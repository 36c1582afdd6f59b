"""PostgreSQL databases as a source kind: ``pg_dump`` out through a pipe, ``pg_restore`` in.

How a worker reaches the server (host, port, role, password, TLS) is libpq's business on that
worker's host: a service in ``pg_service.conf`` named by ``HOLDFAST_PG_SERVICE``, or the
``PG*`` environment variables (and ``~/.pgpass``). Holdfast stores only the database's name,
and passes it to libpq as a quoted ``dbname`` keyword, never as a connection string of its
own, so no name can point a dump or a restore at another server (docs/workloads.md).

Every child process dies with the worker (``PR_SET_PDEATHSIG``) and is killed when the
job stops early (a cancel, a failure on our side): a killed job leaves no ``pg_dump``
holding a snapshot, nor a ``pg_restore`` writing on.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterable, Iterator
from typing import IO, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

# Names Holdfast accepts for a source or a target database: what needs no quoting anywhere
# people will type it (psql, shells, URLs) plus '-'. PostgreSQL allows 63 bytes.
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,62}")
# Where CREATE DATABASE is sent from; the server's own databases are never restore targets.
MAINTENANCE_DATABASE = "postgres"
SYSTEM_DATABASES = frozenset({"postgres", "template0", "template1"})
KIND = "postgres"  # the source kind, and the point's workload kind
DUMP_SUFFIX = ".pgdump"
READ_SIZE = 1024 * 1024
STDERR_LIMIT = 64 * 1024
CONNECT_TIMEOUT = 15


class WorkloadFailed(Exception):
    """A tool or the server refused; the message is the tool's own, to show people."""


def name_refusal(name: str) -> str | None:
    """Why ``name`` cannot name a database here, or None."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        return (
            f"{name!r} is not a database name Holdfast accepts: 1 to 63 letters, digits, '_' "
            "or '-', starting with a letter or '_'."
        )
    return None


def is_dump(workload: Any) -> bool:
    """Whether a point's ``workload`` facts describe a PostgreSQL dump."""
    return isinstance(workload, dict) and workload.get("kind") == KIND


def dump_file_name(database: str) -> str:
    return f"{database}{DUMP_SUFFIX}"


def conninfo(database: str, service: str = "") -> str:
    """libpq keywords for ``database``: the service's (or PG* variables') server and role."""
    refusal = name_refusal(database)
    if refusal is not None:
        raise WorkloadFailed(refusal)
    return make_conninfo(**({"service": service} if service else {}), dbname=database)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # Linux: SIGKILL when the worker (the thread that forked) dies, however it dies.
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


libc: Any = ctypes.CDLL(None, use_errno=True)


class _Tool:
    """A child process whose stderr is collected on a side thread (never a full pipe)."""

    def __init__(self, argv: list[str], *, stdin: int | None, stdout: int | None) -> None:
        self.name = os.path.basename(argv[0])
        self.stderr = bytearray()
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                preexec_fn=_die_with_parent,  # prctl only: takes no lock a thread could hold
                close_fds=True,
            )
        except OSError as exc:
            raise WorkloadFailed(
                f"{self.name} could not be started on this worker ({exc.strerror}): install the "
                "PostgreSQL client tools (docs/workloads.md)."
            ) from None
        self._reader = threading.Thread(target=self._read_errors, daemon=True)
        self._reader.start()

    def _read_errors(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        fd = stream.fileno()
        for line in iter(lambda: os.read(fd, 65536), b""):
            if len(self.stderr) < STDERR_LIMIT:
                self.stderr += line[: STDERR_LIMIT - len(self.stderr)]

    def message(self) -> str:
        text = self.stderr.decode("utf-8", "replace").strip()
        return " ".join(text.split()) or "no message"

    def finish(self) -> None:
        """Wait for the tool; its own message if it failed."""
        code = self.process.wait()
        self._reader.join()
        if code != 0:
            raise WorkloadFailed(f"{self.name} failed (exit status {code}): {self.message()}")

    def stop(self) -> None:
        """Kill the tool if it still runs, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # a broken pipe's unflushed bytes
                    stream.close()
        self._reader.join(timeout=5)
        if self.process.stderr is not None and not self._reader.is_alive():
            self.process.stderr.close()


class Dump:
    """``pg_dump --format=custom`` of one database, uncompressed (the store compresses after
    deduplicating; a compressed dump would change whole after its first changed row)."""

    def __init__(self, database: str, *, service: str = "", program: str = "pg_dump") -> None:
        self.database = database
        self.argv = [
            program,
            "--format=custom",
            "--compress=0",
            "--no-password",
            f"--dbname={conninfo(database, service)}",
        ]
        self.tool: _Tool | None = None

    def __enter__(self) -> Dump:
        self.tool = _Tool(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tool is not None:
            self.tool.stop()

    def pieces(self) -> Iterator[bytes]:
        """The dump's bytes as pg_dump writes them; `WorkloadFailed` with its message if it
        fails, after the bytes it wrote (nothing published is built from them then)."""
        assert self.tool is not None
        stdout: IO[bytes] | None = self.tool.process.stdout
        assert stdout is not None
        while piece := stdout.read(READ_SIZE):
            yield piece
        self.tool.finish()


def configured(service: str = "") -> bool:
    """Whether this process was told where the server is (a service, or libpq's variables),
    rather than left to libpq's defaults (the local socket, the OS user's name)."""
    return bool(service) or any(
        os.environ.get(name) for name in ("PGSERVICE", "PGHOST", "PGHOSTADDR")
    )


def _connect(
    database: str, service: str, timeout: int = CONNECT_TIMEOUT
) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(
            conninfo(database, service), autocommit=True, connect_timeout=timeout
        )
    except psycopg.Error as exc:
        raise WorkloadFailed(" ".join(str(exc).split())) from None


def facts(database: str, *, service: str = "") -> dict[str, Any]:
    """The server's version and the database's size, as the server reports them."""
    with _connect(database, service) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), current_setting('server_version_num'),"
            " pg_database_size(current_database())"
        ).fetchone()
    assert row is not None
    return {"server_version": row[0], "server_version_num": int(row[1]), "database_size": row[2]}


def database_exists(name: str, *, service: str = "", timeout: int = CONNECT_TIMEOUT) -> bool:
    with _connect(MAINTENANCE_DATABASE, service, timeout) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return found is not None


def database_create(name: str, *, service: str = "") -> None:
    """Create the empty database a dump restores into; refused if it exists (no race: the
    server's own CREATE DATABASE refuses)."""
    conninfo(name)  # the name's check
    with _connect(MAINTENANCE_DATABASE, service) as conn:
        try:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
            )
        except psycopg.errors.DuplicateDatabase:
            raise WorkloadFailed(
                f"Database {name} already exists on the server: a restore only creates a new "
                "database. Choose another name."
            ) from None
        except psycopg.Error as exc:
            raise WorkloadFailed(" ".join(str(exc).split())) from None


def database_drop(name: str, *, service: str = "") -> None:
    """Drop a database this restore created and could not finish."""
    conninfo(name)
    with _connect(MAINTENANCE_DATABASE, service) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def restore(
    name: str, pieces: Iterable[bytes], *, service: str = "", program: str = "pg_restore"
) -> int:
    """Feed a custom-format dump to ``pg_restore --no-owner`` into database ``name`` (which
    must exist); the bytes fed. Stops at the first error, with pg_restore's message."""
    argv = [
        program,
        "--no-owner",
        "--exit-on-error",
        "--no-password",
        f"--dbname={conninfo(name, service)}",
    ]
    tool = _Tool(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    fed = 0
    try:
        stdin = tool.process.stdin
        assert stdin is not None
        try:
            for piece in pieces:
                stdin.write(piece)
                fed += len(piece)
            stdin.close()
        except BrokenPipeError:
            pass  # pg_restore stopped reading: its exit status and message say why
        tool.finish()
    finally:
        tool.stop()
    return fed
