"""Real S3 API servers on loopback for the tests: moto and Ceph RGW, one of each per process.

Every test that takes the `s3` (or `s3_server`) fixture runs twice, ``[moto]`` and
``[ceph]``, through boto3 over HTTP exactly as Holdfast talks to AWS:

- moto in server mode (tests/moto_server.py: with a fix for its ListObjectVersions, which
  copied and leaked the whole bucket on every call): the reference for AWS behaviour where
  Ceph differs.
  It is lenient where AWS is strict: it accepts a shorter COMPLIANCE retention, stores a
  body whose ``x-amz-checksum-*`` does not match it, and drops the lock headers of
  CreateMultipartUpload.
- Ceph RGW (Debian's Ceph 16.2), a throwaway single-node cluster started with the
  vendored ``scripts/ceph-rgw/start-rgw.sh``: it enforces Object Lock as AWS does, but
  ignores ``If-None-Match: *`` on PUT, the lock headers of CreateMultipartUpload, and
  checksums, and has only the STANDARD storage class.

Where the servers must differ, the test asks the `S3Server` flags below and says which
behaviour is AWS's. Ceph starts on first use, once per pytest process (each xdist worker
gets its own cluster, directory and free port, so workers never share one), and stops at
the end of the session; a reaper process stops it too if pytest is killed. Without the
Ceph packages the ``[ceph]`` cases are skipped saying so, unless ``HOLDFAST_REQUIRE_CEPH``
is set (CI sets it: there they must run).

Objects under COMPLIANCE retention can never be deleted, so every test takes its own
bucket (`S3Server.bucket`); the cluster and everything in it is thrown away at the end.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vaults.storage.s3_client import make_client

ROOT = Path(__file__).resolve().parent.parent
RGW_SCRIPTS = ROOT / "scripts" / "ceph-rgw"
CEPH_PACKAGES = "radosgw ceph-mon ceph-osd curl"
CEPH_BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph", "curl")
MOTO_KEYS = ("holdfast-test", "holdfast-test-secret")
S3_SERVERS = ("moto", "ceph")


@dataclass(frozen=True)
class S3Server:
    """One S3 server under test, and how it departs from AWS."""

    name: str  # "moto" or "ceph": also the test id suffix
    endpoint: str
    access_key: str
    secret_key: str
    version: str
    # AWS's behaviour: True for all four. Neither server keeps the lock headers of
    # CreateMultipartUpload, which AWS applies to the completed object.
    refuses_shorter_compliance: bool  # moto 5.2 accepts one
    honours_if_none_match: bool  # Ceph 16.2 overwrites: a second version stacks
    validates_checksums: bool  # AWS answers BadDigest; moto and Ceph store the body
    has_aws_storage_classes: bool  # Ceph 16.2 has STANDARD only, unless configured
    archive_storage_class: str  # a class for archive packs the server accepts

    def client(self) -> Any:
        """A client shared by the tests of this process (boto3 clients are thread-safe and
        slow to build)."""
        return self._client

    @functools.cached_property
    def _client(self) -> Any:
        return self.new_client()

    def new_client(self) -> Any:
        """A client of its own, e.g. to hook its requests."""
        return make_client(
            endpoint_url=self.endpoint, access_key=self.access_key, secret_key=self.secret_key
        )

    def env(self) -> dict[str, str]:
        """What a worker process on another host would be given."""
        return {
            "HOLDFAST_S3_ENDPOINT_URL": self.endpoint,
            "HOLDFAST_S3_ACCESS_KEY_ID": self.access_key,
            "HOLDFAST_S3_SECRET_ACCESS_KEY": self.secret_key,
        }

    def bucket(self, *, lock: bool = True, versioning: bool = True) -> str:
        """A new, uniquely named bucket (COMPLIANCE objects can never be deleted)."""
        name = f"hf-{uuid.uuid4().hex[:12]}"
        client = self.client()
        client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock)
        if versioning and not lock:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start: {log.read_text()}") from None
            time.sleep(0.05)


@contextlib.contextmanager
def running_moto(directory: Path) -> Iterator[S3Server]:
    """A moto server of its own on a free loopback port, its log in ``directory``."""
    from importlib.metadata import version

    port = _free_port()
    log = directory / "moto.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            # moto, its ListObjectVersions fixed to copy only the prefix (tests/moto_server.py)
            [sys.executable, "-m", "tests.moto_server", "-H", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
        )
    try:
        _wait_for_port(port, process, "moto_server", log)
        yield S3Server(
            name="moto",
            endpoint=f"http://127.0.0.1:{port}",
            access_key=MOTO_KEYS[0],
            secret_key=MOTO_KEYS[1],
            version=f"moto {version('moto')}",
            refuses_shorter_compliance=False,
            honours_if_none_match=True,
            validates_checksums=False,
            has_aws_storage_classes=True,
            archive_storage_class="GLACIER_IR",
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_moto(tmp_path_factory.mktemp("moto")) as server:
        yield server


def ceph_missing() -> str | None:
    """Why Ceph RGW cannot be started here, or None when it can."""
    missing = [name for name in CEPH_BINARIES if shutil.which(name) is None]
    if missing:
        return (
            f"Ceph RGW is not installed (missing {', '.join(missing)}): "
            f"apt-get install --no-install-recommends {CEPH_PACKAGES}, or run .ci/run"
        )
    return None


def start_ceph(directory: Path, attempts: int = 3) -> dict[str, str]:
    """Start a cluster in `directory` on a free port; the variables of its ``env`` file.

    The port is free when picked and taken by radosgw a moment later: should another
    process take it meanwhile, the script refuses and we pick another."""
    error = ""
    for _ in range(attempts):
        port = _free_port()
        if 6800 <= port <= 7300:  # the OSD's own port range
            continue
        done = subprocess.run(
            [str(RGW_SCRIPTS / "start-rgw.sh"), str(directory)],
            env={**os.environ, "S3_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode == 0:
            values = {}
            for line in (directory / "env").read_text().splitlines():
                name, _, value = line.removeprefix("export ").partition("=")
                values[name] = value
            return values
        error = done.stderr[-3000:]
        if "already listens" not in error:
            break
    raise RuntimeError(f"Ceph RGW did not start in {directory}:\n{error}")


def stop_ceph(directory: Path) -> None:
    subprocess.run(
        [str(RGW_SCRIPTS / "stop-rgw.sh"), str(directory)],
        capture_output=True,
        timeout=120,
        check=False,
    )


def ceph_reaper(directory: Path) -> subprocess.Popen[bytes]:
    """A process that stops the cluster once our end of its stdin closes: at the end of the
    session, or when pytest dies without tearing down (killed, out of memory).

    It runs in its own session, so a Ctrl-C to pytest's process group does not take it down
    before it has done its job; stopping twice is harmless."""
    stop = shlex.join([str(RGW_SCRIPTS / "stop-rgw.sh"), str(directory)])
    return subprocess.Popen(
        ["/bin/sh", "-c", f"read _ignored; exec {stop}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture(scope="session")
def ceph_server() -> Iterator[S3Server]:
    reason = ceph_missing()
    if reason is not None:
        if os.environ.get("HOLDFAST_REQUIRE_CEPH"):
            pytest.fail(f"HOLDFAST_REQUIRE_CEPH is set but {reason}", pytrace=False)
        pytest.skip(reason)
    # A short path of our own: the daemons' admin sockets live in it (sun_path is 108 bytes).
    directory = Path(tempfile.mkdtemp(prefix="hf-rgw-"))
    reaper = ceph_reaper(directory)
    try:
        values = start_ceph(directory)
        version = subprocess.run(
            ["radosgw", "--version"], capture_output=True, text=True, check=False
        ).stdout.split()
        yield S3Server(
            name="ceph",
            endpoint=values["S3_ENDPOINT"],
            access_key=values["S3_ACCESS_KEY"],
            secret_key=values["S3_SECRET_KEY"],
            version=f"Ceph RGW {version[2] if len(version) > 2 else '?'}",
            refuses_shorter_compliance=True,
            honours_if_none_match=False,
            validates_checksums=False,
            has_aws_storage_classes=False,
            archive_storage_class="STANDARD",
        )
    finally:
        stop_ceph(directory)
        assert reaper.stdin is not None
        reaper.stdin.close()
        reaper.wait(timeout=120)


@pytest.fixture(scope="session", params=S3_SERVERS)
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """Each S3 server in turn: a test taking this fixture runs once per server."""
    server: S3Server = request.getfixturevalue(f"{request.param}_server")
    return server


def _configured(server: S3Server, settings: Any) -> S3Server:
    for key, value in server.env().items():
        setattr(settings, key, value)
    settings.HOLDFAST_S3_CREDENTIALS_FILE = ""
    settings.HOLDFAST_S3_ARCHIVE_LOCATION = ""
    settings.HOLDFAST_S3_ARCHIVE_STORAGE_CLASS = server.archive_storage_class
    return server


@pytest.fixture
def s3(s3_server: S3Server, settings: Any) -> S3Server:
    """Each server in turn, with Holdfast's settings pointing at it."""
    return _configured(s3_server, settings)


@pytest.fixture
def moto_s3(moto_server: S3Server, settings: Any) -> S3Server:
    """moto alone, for what only it offers (cold storage classes) or what does not depend on
    the server (form and API validation on top of a bucket check tested on both)."""
    return _configured(moto_server, settings)
