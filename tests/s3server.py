"""A real S3 API server on loopback for the tests: moto in server mode, one per test process.

moto's server speaks the S3 wire protocol over HTTP and implements versioning and Object
Lock (retention modes, legal holds, the governance-bypass header), so the S3 backend is
tested through boto3 exactly as it talks to AWS or MinIO. Each test gets its own bucket.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from vaults.storage.s3 import make_client

ACCESS_KEY, SECRET_KEY = "holdfast-test", "holdfast-test-secret"


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def client(self) -> Any:
        return make_client(endpoint_url=self.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY)

    def env(self) -> dict[str, str]:
        """What a worker process on another host would be given."""
        return {
            "HOLDFAST_S3_ENDPOINT_URL": self.endpoint,
            "HOLDFAST_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "HOLDFAST_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def bucket(self, *, lock: bool = True, versioning: bool = True) -> str:
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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("moto_server")),
                "-H",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {log.read_text()}") from None
                time.sleep(0.05)
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3(s3_server: S3Server, settings: Any) -> S3Server:
    """The server, with Holdfast's settings pointing at it."""
    for key, value in s3_server.env().items():
        setattr(settings, key, value)
    settings.HOLDFAST_S3_CREDENTIALS_FILE = ""
    settings.HOLDFAST_S3_ARCHIVE_LOCATION = ""
    return s3_server
