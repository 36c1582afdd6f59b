"""Chunk objects: content-defined cutting and the encoding under the encryption layer.

A chunk is identified by the keyed BLAKE3 hex digest of its plaintext (the key derived from
its vault's data key, `crypto.DataKey.chunk_id`) and stored once per store under
`chunks/<first two hex digits>/<id>`. Its encoding, sealed by the store's `SealedBackend`
before it reaches storage, is a 5-byte header followed by the payload:

    b"HFC" | format version (1 byte, currently 1) | codec (1 byte: 0 raw, 1 zstd)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import zstandard
from fastcdc import fastcdc

from .crypto import ChunkIds
from .errors import CorruptChunk

CHUNK_MAGIC = b"HFC"
CHUNK_FORMAT_VERSION = 1
CODEC_RAW = 0
CODEC_ZSTD = 1
HEADER_SIZE = len(CHUNK_MAGIC) + 2

# FastCDC parameters. A 1 MiB average keeps per-object overhead (one PUT, two fsyncs,
# one manifest reference) small next to the payload while still deduplicating edits to
# large files well; FastCDC skips the first `MIN_SIZE` bytes of every chunk, so a large
# minimum also makes cutting cheap (well over 1 GB/s).
MIN_SIZE = 256 * 1024
AVG_SIZE = 1024 * 1024
MAX_SIZE = 4 * 1024 * 1024
# The stream that concatenates small files (see store.SMALL_FILE_THRESHOLD) is cut finer:
# an edit to one small file rewrites the chunk or two around it, so the average chunk size
# is the write amplification of a scattered small-file edit. docs/storage.md has the
# measurements behind 256 KiB (about 4x the objects of 1 MiB, a quarter of the rewrite).
SMALL_MIN_SIZE = 64 * 1024
SMALL_AVG_SIZE = 256 * 1024
SMALL_MAX_SIZE = 1024 * 1024
# How much a chunker buffers before cutting; must exceed MAX_SIZE by a comfortable margin.
READ_SIZE = 16 * 1024 * 1024

DEFAULT_LEVEL = 3

_local = threading.local()


def chunk_key(chunk_id: str) -> str:
    return f"chunks/{chunk_id[:2]}/{chunk_id}"


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # zstd contexts are not thread-safe; one per thread and level.
    cache: dict[int, zstandard.ZstdCompressor] = _local.__dict__.setdefault("compressors", {})
    compressor = cache.get(level)
    if compressor is None:
        compressor = cache[level] = zstandard.ZstdCompressor(level=level, write_checksum=False)
    return compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    decompressor = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    return decompressor


def encode_chunk(data: bytes, level: int = DEFAULT_LEVEL) -> tuple[bytes, bytes]:
    """Header and payload (zstd, or the raw bytes when compression does not pay), as two
    parts: the sealing encrypts them into the stored object in one pass, never joined."""
    packed = _compressor(level).compress(data)
    if len(packed) < len(data):
        return CHUNK_MAGIC + bytes((CHUNK_FORMAT_VERSION, CODEC_ZSTD)), packed
    return CHUNK_MAGIC + bytes((CHUNK_FORMAT_VERSION, CODEC_RAW)), data


def decode_chunk(expected_id: str, blob: bytes, expected_size: int | None, ids: ChunkIds) -> bytes:
    """Return the plaintext of a chunk's opened object, checking header, size and its keyed
    hash (`ids`, the store's sealed backend)."""
    if len(blob) < HEADER_SIZE or blob[:3] != CHUNK_MAGIC:
        raise CorruptChunk(expected_id, "its header is missing or damaged")
    version, codec = blob[3], blob[4]
    if version != CHUNK_FORMAT_VERSION:
        raise CorruptChunk(expected_id, f"unknown chunk format version {version}")
    payload = memoryview(blob)[HEADER_SIZE:]
    if codec == CODEC_RAW:
        data = bytes(payload)
    elif codec == CODEC_ZSTD:
        try:
            data = _decompressor().decompress(payload)
        except zstandard.ZstdError as exc:
            raise CorruptChunk(expected_id, f"it does not decompress ({exc})") from None
    else:
        raise CorruptChunk(expected_id, f"unknown codec {codec}")
    if expected_size is not None and len(data) != expected_size:
        raise CorruptChunk(expected_id, f"it holds {len(data)} bytes, expected {expected_size}")
    if not ids.chunk_matches(expected_id, data):
        raise CorruptChunk(expected_id, "its content does not match its keyed BLAKE3 hash")
    return data


class StreamChunker:
    """Cuts a byte stream fed in pieces into FastCDC chunks.

    Cut points equal those of one FastCDC pass over the whole stream: FastCDC decides a
    cut from at most `max_size` bytes after a chunk's start, so every chunk but the last of
    a buffer is final, and the last one is carried over to the next buffer.
    """

    def __init__(
        self, min_size: int = MIN_SIZE, avg_size: int = AVG_SIZE, max_size: int = MAX_SIZE
    ) -> None:
        if not min_size <= avg_size <= max_size <= READ_SIZE // 2:
            raise ValueError("Chunk sizes must satisfy min <= avg <= max <= READ_SIZE / 2.")
        self.min_size, self.avg_size, self.max_size = min_size, avg_size, max_size
        self._pieces: list[bytes] = []
        self._pending = 0
        self._offset = 0  # stream offset of the first pending byte

    def feed(self, data: bytes) -> Iterator[tuple[int, memoryview]]:
        """Add bytes; yield (stream offset, chunk) for every chunk now final."""
        if data:
            self._pieces.append(data)
            self._pending += len(data)
        if self._pending >= READ_SIZE:
            yield from self._cut(final=False)

    def finish(self) -> Iterator[tuple[int, memoryview]]:
        yield from self._cut(final=True)

    def _cut(self, *, final: bool) -> Iterator[tuple[int, memoryview]]:
        if not self._pending:
            return
        buffer = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
        cuts = [
            (c.offset, c.length)
            for c in fastcdc(buffer, self.min_size, self.avg_size, self.max_size)
        ]
        keep = cuts if final else cuts[:-1]
        base = self._offset
        # Views, not copies: each chunk is hashed, compressed and sealed straight from the
        # read buffer (which lives as long as a chunk of it is in flight).
        view = memoryview(buffer)
        for offset, length in keep:
            yield base + offset, view[offset : offset + length]
        consumed = sum(length for _, length in keep)
        self._offset += consumed
        rest = buffer[consumed:]
        self._pieces = [rest] if rest else []
        self._pending = len(rest)
