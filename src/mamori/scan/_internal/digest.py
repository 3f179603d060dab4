"""Digests of the exact bytes the scanner analyses.

Hashing is the physical floor of a scan's speed, so it reads with ``os.preadv`` into one reused
buffer (no copies) and leaves the GIL to ``hashlib`` and ``zlib``, which release it on large
buffers. That lets the engine hash one region on a worker thread while the main thread parses.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Final

from mamori.scan._internal.source import BytesSource, FileRegion, Source

__all__ = ["Digests", "HashingReader", "MultiHasher", "digest_source"]

CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Digests:
    """Digests of a byte sequence. ``crc32`` is only computed when a container declares one."""

    size: int
    sha256: str
    md5: str | None
    crc32: int | None


class MultiHasher:
    """Feeds the same bytes to SHA-256, and optionally MD5 and CRC-32."""

    def __init__(self, *, md5: bool, crc32: bool) -> None:
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self._crc: int | None = 0 if crc32 else None
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Add ``data`` to every digest."""
        self._sha256.update(data)
        if self._md5 is not None:
            self._md5.update(data)
        if self._crc is not None:
            self._crc = zlib.crc32(data, self._crc)
        self.size += len(data)

    def result(self) -> Digests:
        """The digests of everything fed so far."""
        return Digests(
            size=self.size,
            sha256=self._sha256.hexdigest(),
            md5=None if self._md5 is None else self._md5.hexdigest(),
            crc32=self._crc,
        )


def digest_source(
    source: Source,
    *,
    md5: bool,
    crc32: bool,
    progress: Callable[[int], None] | None = None,
) -> Digests:
    """Hash a re-openable source completely. Safe to call from a worker thread.

    ``progress`` is called with the number of bytes hashed so far, about once per MiB.
    """
    hasher = MultiHasher(md5=md5, crc32=crc32)
    if isinstance(source, BytesSource):
        hasher.update(source.data)
        return hasher.result()
    if isinstance(source, FileRegion):
        _digest_region(source, hasher, progress)
        return hasher.result()
    with source.open() as stream:
        while chunk := stream.read(CHUNK):
            hasher.update(chunk)
    return hasher.result()


def _digest_region(
    region: FileRegion, hasher: MultiHasher, progress: Callable[[int], None] | None
) -> None:
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    assert region.size is not None  # FileRegion always knows its size
    end = region.offset + region.size
    fd = os.open(region.path, os.O_RDONLY)
    try:
        pos = region.offset
        while pos < end:
            want = min(CHUNK, end - pos)
            n = os.preadv(fd, [view[:want]], pos)
            if n <= 0:
                break  # the file shrank under us; the size mismatch is reported by the caller
            hasher.update(view[:n])
            pos += n
            if progress is not None:
                progress(pos - region.offset)
    finally:
        os.close(fd)


class HashingReader:
    """A read-only stream wrapper that hashes every byte read through it (a tee)."""

    def __init__(self, inner: IO[bytes], hasher: MultiHasher) -> None:
        self._inner = inner
        self.hasher = hasher

    def read(self, size: int = -1) -> bytes:
        """Read from the inner stream and hash what was read."""
        data = self._inner.read(size)
        self.hasher.update(data)
        return data

    def drain(self) -> None:
        """Read and hash whatever the consumer did not read, so the digest covers all bytes."""
        while chunk := self._inner.read(CHUNK):
            self.hasher.update(chunk)

    def close(self) -> None:
        """Close the inner stream."""
        self._inner.close()
