"""Byte sources the scanner reads from, without ever loading their content as objects.

A :class:`Source` is either re-openable and seekable (a file, a region of a file, bytes in
memory) or a one-shot stream (a decompressor). Format handlers read through :meth:`Source.open`.
"""

from __future__ import annotations

import io
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import IO, Final

__all__ = ["BytesSource", "FileRegion", "RegionReader", "Source", "StreamSource"]

CHUNK: Final = 1 << 20


class Source(ABC):
    """Bytes to scan. ``size`` is ``None`` when unknown before reading (a compressed stream)."""

    size: int | None
    random_access: bool

    @abstractmethod
    def open(self) -> IO[bytes]:
        """Return a fresh binary reader positioned at the first byte of this source."""


class RegionReader(io.RawIOBase):
    """A seekable, read-only window ``[offset, offset+length)`` of an open file descriptor.

    Uses ``os.pread`` so that several readers can share one descriptor without racing on the
    file position.
    """

    def __init__(self, fd: int, offset: int, length: int, *, owns_fd: bool) -> None:
        super().__init__()
        self._fd = fd
        self._offset = offset
        self._length = length
        self._pos = 0
        self._owns_fd = owns_fd

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            new = pos
        elif whence == io.SEEK_CUR:
            new = self._pos + pos
        elif whence == io.SEEK_END:
            new = self._length + pos
        else:
            msg = f"invalid whence {whence}"
            raise ValueError(msg)
        if new < 0:
            msg = "negative seek position"
            raise ValueError(msg)
        self._pos = new
        return new

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # io's buffer type is wider than needed
        """Read into ``buffer`` without crossing the end of the region."""
        remaining = self._length - self._pos
        if remaining <= 0:
            return 0
        view = memoryview(buffer).cast("B")
        want = min(len(view), remaining)
        data = os.pread(self._fd, want, self._offset + self._pos)
        n = len(data)
        view[:n] = data
        self._pos += n
        return n

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all remaining when negative or ``None``)."""
        remaining = self._length - self._pos
        if remaining <= 0:
            return b""
        want = remaining if size is None or size < 0 else min(size, remaining)
        data = os.pread(self._fd, want, self._offset + self._pos)
        self._pos += len(data)
        return data

    def close(self) -> None:
        """Close the descriptor if this reader owns it."""
        if not self.closed and self._owns_fd:
            os.close(self._fd)
        super().close()


class FileRegion(Source):
    """A whole file, or the byte range ``[offset, offset+length)`` of one (a stored zip member)."""

    random_access = True

    def __init__(
        self, path: str | os.PathLike[str], offset: int = 0, length: int | None = None
    ) -> None:
        self.path = os.fspath(path)
        self.offset = offset
        if length is None:
            length = os.stat(self.path).st_size - offset
        self.size = length

    def open(self) -> IO[bytes]:
        """Open a new descriptor on the file and return a reader over the region."""
        fd = os.open(self.path, os.O_RDONLY)
        assert self.size is not None  # set in __init__
        return io.BufferedReader(RegionReader(fd, self.offset, self.size, owns_fd=True), CHUNK)

    def __repr__(self) -> str:
        return f"FileRegion({self.path!r}, offset={self.offset}, length={self.size})"


class BytesSource(Source):
    """Bytes already in memory (a small decompressed member, a test payload)."""

    random_access = True

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = bytes(data)
        self.size = len(self.data)

    def open(self) -> IO[bytes]:
        """Return a reader over the bytes."""
        return io.BytesIO(self.data)


class StreamSource(Source):
    """A one-shot stream, such as a decompressor. It can be opened exactly once."""

    random_access = False

    def __init__(self, factory: Callable[[], IO[bytes]], size: int | None = None) -> None:
        self._factory: Callable[[], IO[bytes]] | None = factory
        self.size = size

    def open(self) -> IO[bytes]:
        """Open the stream; a second call is a programming error."""
        if self._factory is None:
            msg = "a StreamSource can be opened only once"
            raise RuntimeError(msg)
        factory, self._factory = self._factory, None
        return factory()
