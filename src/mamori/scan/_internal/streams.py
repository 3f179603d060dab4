"""Stream plumbing for the engine: tees that hash while a handler reads, and spooled members."""

from __future__ import annotations

import io
import os
from typing import IO

from mamori.scan._internal.context import PROBE_BYTES, Probe
from mamori.scan._internal.digest import CHUNK, MultiHasher
from mamori.scan._internal.source import RegionReader, Source

__all__ = ["DescriptorSource", "OneShotTee", "TeeSource", "probe_random", "read_exactly"]


class OneShotTee(io.RawIOBase):
    """Replays the probed head, then streams the rest, hashing every byte exactly once."""

    def __init__(self, head: bytes, inner: IO[bytes], hasher: MultiHasher) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._inner = inner
        self.hasher = hasher

    def readable(self) -> bool:
        """Always readable."""
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # io's buffer type is wider than needed
        """Serve the remaining head first, then read and hash from the inner stream."""
        view = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._inner.read(len(view))
        self.hasher.update(data)
        view[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Hash the rest of the stream that the handler did not read."""
        self._head = memoryview(b"")
        while chunk := self._inner.read(CHUNK):
            self.hasher.update(chunk)


class TeeSource(Source):
    """A one-shot source whose reads go through a hashing tee."""

    random_access = False

    def __init__(self, tee: OneShotTee, size: int | None) -> None:
        self._tee: OneShotTee | None = tee
        self.size = size

    def open(self) -> IO[bytes]:
        """Return the stream; it can be handed out once."""
        if self._tee is None:
            msg = "a streamed member can be read only once"
            raise RuntimeError(msg)
        tee, self._tee = self._tee, None
        return io.BufferedReader(tee, CHUNK)


class DescriptorSource(Source):
    """A spooled member in an unlinked temporary file, read through ``pread``."""

    random_access = True

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self.size = size

    def open(self) -> IO[bytes]:
        """A new reader over the spooled bytes; several may be open at once (pread)."""
        assert self.size is not None
        reader = RegionReader(os.dup(self._fd), 0, self.size, owns_fd=True)
        return io.BufferedReader(reader, CHUNK)


def read_exactly(stream: IO[bytes], n: int) -> bytes:
    parts: list[bytes] = []
    remaining = n
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def probe_random(source: Source, member_path: tuple[str, ...]) -> Probe:
    with source.open() as stream:
        head = read_exactly(stream, PROBE_BYTES)
        tail: bytes | None = None
        size = source.size
        if size is not None and size > PROBE_BYTES:
            stream.seek(size - PROBE_BYTES)
            tail = read_exactly(stream, PROBE_BYTES)
        elif size is not None:
            tail = head
    return Probe(head=head, tail=tail, size=size, name=member_path[-1] if member_path else "")
