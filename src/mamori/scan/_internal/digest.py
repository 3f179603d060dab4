"""Digests of the exact bytes the scanner analyses.

Hashing is the physical floor of a scan's speed, so it reads with ``os.preadv`` into one reused
buffer (no copies) and leaves the GIL to ``hashlib`` and ``zlib``, which release it on large
buffers. That lets the engine hash one region on a worker thread while the main thread parses.

An archive of many small members (a torch zip with 20,000 tensors) would spend more on one
pool task per member (a future, a lock, an ``open``) than on hashing, so
:class:`DigestBatcher` groups member regions into batches of about 32 MiB, each hashed by
one task over one descriptor: the file's own digest and the members' run in parallel, in
about the time of one SHA-256 pass.
"""

from __future__ import annotations

import hashlib
import os
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import IO, Final

from mamori.scan._internal.source import BytesSource, FileRegion, Source

__all__ = [
    "DigestBatcher",
    "Digests",
    "HashingReader",
    "MultiHasher",
    "PendingDigest",
    "digest_source",
]

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
    region: FileRegion,
    hasher: MultiHasher,
    progress: Callable[[int], None] | None,
    fd: int | None = None,
    view: memoryview | None = None,
) -> None:
    if view is None:
        view = memoryview(bytearray(CHUNK))
    assert region.size is not None  # FileRegion always knows its size
    end = region.offset + region.size
    own = fd is None
    if fd is None:
        fd = os.open(region.path, os.O_RDONLY)
    try:
        pos = region.offset
        while pos < end:
            want = min(len(view), end - pos)
            n = os.preadv(fd, [view[:want]], pos)
            if n <= 0:
                break  # the file shrank under us; the size mismatch is reported by the caller
            hasher.update(view[:n])
            pos += n
            if progress is not None:
                progress(pos - region.offset)
    finally:
        if own:
            os.close(fd)


_BATCH_BYTES: Final = 32 << 20
_BATCH_COUNT: Final = 4096


class PendingDigest:
    """The digest of one member, hashed in a batch; :meth:`result` waits for it."""

    __slots__ = ("_batch", "_slot")

    def __init__(self, batch: _Batch, slot: int) -> None:
        self._batch = batch
        self._slot = slot

    def result(self) -> Digests:
        """The digests; raises the ``OSError`` that reading this member raised."""
        self._batch.done.result()
        outcome = self._batch.results[self._slot]
        if isinstance(outcome, OSError):
            raise outcome
        assert outcome is not None
        return outcome


@dataclass(slots=True)
class _Batch:
    jobs: list[tuple[Source, bool, bool]]
    results: list[Digests | OSError | None]
    done: Future[None]
    size: int = 0


class DigestBatcher:
    """Hashes many small regions with few pool tasks (see the module docstring)."""

    def __init__(self, pool: Executor) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._open: _Batch | None = None

    def submit(self, source: Source, *, md5: bool, crc32: bool) -> PendingDigest:
        """Queue ``source`` for hashing; the batch starts once it is full or on :meth:`flush`."""
        with self._lock:
            batch = self._open
            if batch is None:
                batch = self._open = _Batch([], [], Future())
            batch.jobs.append((source, md5, crc32))
            batch.results.append(None)
            batch.size += source.size or 0
            pending = PendingDigest(batch, len(batch.jobs) - 1)
            if batch.size >= _BATCH_BYTES or len(batch.jobs) >= _BATCH_COUNT:
                self._start(batch)
        return pending

    def flush(self) -> None:
        """Start the batch being filled (call before waiting for results)."""
        with self._lock:
            if self._open is not None:
                self._start(self._open)

    def _start(self, batch: _Batch) -> None:
        self._open = None
        try:
            self._pool.submit(_run_batch, batch)
        except RuntimeError as exc:  # the pool is shutting down: fail every member of it
            batch.done.set_exception(exc)


def _run_batch(batch: _Batch) -> None:
    view = memoryview(bytearray(CHUNK))
    fds: dict[str, int] = {}
    try:
        for slot, (source, md5, crc32) in enumerate(batch.jobs):
            hasher = MultiHasher(md5=md5, crc32=crc32)
            try:
                if isinstance(source, FileRegion):
                    fd = fds.get(source.path)
                    if fd is None:
                        fd = fds[source.path] = os.open(source.path, os.O_RDONLY)
                    _digest_region(source, hasher, None, fd, view)
                    batch.results[slot] = hasher.result()
                else:
                    batch.results[slot] = digest_source(source, md5=md5, crc32=crc32)
            except OSError as exc:
                batch.results[slot] = exc
    except BaseException as exc:
        batch.done.set_exception(exc)
        raise
    finally:
        for fd in fds.values():
            os.close(fd)
    batch.done.set_result(None)


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
