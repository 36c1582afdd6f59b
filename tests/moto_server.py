"""moto's S3 server for the tests and `make bench-s3`, with one fix: ``python -m tests.moto_server``
takes moto_server's arguments.

moto 5.2 answers ListObjectVersions by deep-copying every version of every key in the bucket,
bodies included, before it filters them by prefix, and every copy stays referenced
(``BaseModel.instances_tracked``): each call costs, and leaks, about the size of the bucket
(measured: a 100 MiB bucket grew the server by 2 GB in 20 calls; `make bench-s3` on 269 MiB
had it killed by the kernel at 20 GB). Holdfast lists one key's versions after each locked
write (docs/storage.md, "Versions stacked on one key"), which AWS and Ceph RGW answer from an
index. The fix hands the function only the keys under the asked prefix, which it would keep
anyway, so its answers are unchanged; only the versions of those keys are copied (and leak).
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Iterator
from typing import Any

from moto.s3 import models, utils
from moto.server import main

_listing = threading.local()
_iterlists = utils._VersionedKeyStore._iterlists
_list_object_versions = models.S3Backend.list_object_versions
_signature = inspect.signature(_list_object_versions)


def _iterlists_under_prefix(self: Any) -> Iterator[tuple[str, list[Any]]]:
    prefix = getattr(_listing, "prefix", "")
    for key, versions in _iterlists(self):
        if key.startswith(prefix):
            yield key, versions


def _list_object_versions_under_prefix(self: Any, *args: Any, **kwargs: Any) -> Any:
    bound = _signature.bind(self, *args, **kwargs)
    bound.apply_defaults()
    _listing.prefix = bound.arguments.get("prefix") or ""
    try:
        return _list_object_versions(self, *args, **kwargs)
    finally:
        _listing.prefix = ""


utils._VersionedKeyStore.iterlists = _iterlists_under_prefix  # type: ignore[method-assign]
utils._VersionedKeyStore.lists = _iterlists_under_prefix  # type: ignore[method-assign]
models.S3Backend.list_object_versions = _list_object_versions_under_prefix  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
