"""Downloading files from a recovery point (a restore by another road): gated like a
restore (``point_download``, the ``operate`` capability), audited with the point, the paths
and the bytes, refused over ``HOLDFAST_DOWNLOAD_MAX_BYTES``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.template.defaultfilters import filesizeformat

from portal import gate
from portal.gate import Check, DomainError

from ..jobs.requests import archived_refusal
from ..locations import vault_store
from ..models import RecoveryPoint
from ..storage import StorageError
from ..storage.download import Selection, file_bytes, select, zip_stream
from ..storage.manifest import Manifest
from ..storage.store import VaultStore

DEFAULT_MAX_BYTES = 1024**3


def download_limit() -> int:
    return int(getattr(settings, "HOLDFAST_DOWNLOAD_MAX_BYTES", DEFAULT_MAX_BYTES))


@dataclass(frozen=True)
class Download:
    """What the response streams: one file as it is, or the selection as a zip."""

    point: RecoveryPoint
    selection: Selection
    filename: str
    store: VaultStore
    manifest: Manifest

    @property
    def is_zip(self) -> bool:
        return self.selection.single_file is None

    def chunks(self) -> Iterator[bytes]:
        single = self.selection.single_file
        if single is not None:
            return file_bytes(self.store, self.manifest, single)
        return zip_stream(self.store, self.manifest, self.selection)


def point_download(*, actor: Any, point: RecoveryPoint, paths: list[str]) -> Download:
    """Check and audit a download of ``paths`` from ``point``; the caller streams it.

    Refused (nothing read, the refusal audited) for a reader, a path the point does not hold,
    an archived point without a live rehydrated copy, a soft-deleted point, or a selection
    over the size limit."""

    def precheck(check: Check) -> None:
        if point.is_archived and not point.is_rehydrated(check.now):
            raise archived_refusal(point)
        if point.is_expired(check.now):
            raise DomainError(
                "validation_error",
                f"Recovery point {point.pk} is soft-deleted: retain it again (undelete it) "
                "first, then download from it.",
            )
        store = vault_store(point.vault)
        try:
            manifest = store.manifest(point.storage_key)
            selection = select(manifest, paths)
        except StorageError as exc:
            raise DomainError("validation_error", str(exc), field="paths") from None
        limit = download_limit()
        if selection.total_bytes > limit:
            raise DomainError(
                "download_too_large",
                f"The selection holds {filesizeformat(selection.total_bytes)}, more than the "
                f"{filesizeformat(limit)} a download may hold: nothing was sent. Choose fewer "
                "files, or restore them to a restore root instead.",
            )
        check.facts.update(store=store, manifest=manifest, selection=selection)

    def change(check: Check) -> Download:
        selection: Selection = check.facts["selection"]
        single = selection.single_file
        name = single.name if single is not None else f"{point.item.name}-point-{point.pk}.zip"
        return Download(point, selection, name, check.facts["store"], check.facts["manifest"])

    return gate.execute(
        "point_download",
        actor=actor,
        vault=point.vault,
        target=f"point:{point.pk}",
        before={"point": point.pk, "item": point.item.name},
        precheck=precheck,
        change=change,
        after=lambda d: {
            "point": point.pk,
            "paths": sorted(paths)[:100],
            "files": sum(1 for _n, node in d.selection.entries if node.kind == "file"),
            "bytes": d.selection.total_bytes,
            "zip": d.is_zip,
        },
    )
