"""A bounded window over a binary stream, so that a multi-GB pickle never sits in memory.

The interpreter reads opcodes from ``buf[pos:]``; when it needs more bytes it asks
:meth:`Window.fill`, which keeps the unread tail and appends the next chunk. Arguments larger
than :data:`KEEP_LIMIT` (a huge BINBYTES8) are skipped with :meth:`Window.skip` instead of
being read into memory.

``exact`` mode reads no byte past what the interpreter asked for. It is used when the caller
needs the stream positioned right after STOP and the stream cannot seek back.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO, Final

__all__ = ["CHUNK", "KEEP_LIMIT", "Spliced", "Window"]

CHUNK: Final = 1 << 20
KEEP_LIMIT: Final = 1 << 20
"""Largest string/bytes argument kept as a value; larger ones become ``BigData``."""


class Window:
    """``buf`` holds stream bytes from absolute offset ``base``; ``pos`` indexes into it."""

    __slots__ = ("base", "buf", "eof", "exact", "on_refill", "origin", "pos", "stream")

    def __init__(self, stream: IO[bytes], base: int, *, exact: bool) -> None:
        self.stream = stream
        self.base = base
        self.buf = b""
        self.pos = 0
        self.eof = False
        self.exact = exact
        self.on_refill: Callable[[], None] | None = None
        """Called after each refill that read new bytes (about once per MiB): the driver
        checks its memory budget there, since one MiB of input can add one MiB of values."""
        self.origin: int | None = None
        """Stream position of absolute offset 0 when the stream can seek, else None."""
        try:
            if stream.seekable():
                self.origin = stream.tell() - base
        except (AttributeError, OSError, ValueError):
            self.origin = None

    def read_range(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` (absolute) again: from the window, else by seeking back.

        Only called when :attr:`origin` is known (the fast path's lazy runs need it).
        """
        if start >= self.base and end <= self.base + len(self.buf):
            return self.buf[start - self.base : end - self.base]
        assert self.origin is not None
        here = self.stream.tell()
        try:
            self.stream.seek(self.origin + start)
            data = self.stream.read(end - start)
        finally:
            self.stream.seek(here)
        return data

    @property
    def offset(self) -> int:
        """Absolute offset of ``buf[pos]``."""
        return self.base + self.pos

    def fill(self, need: int) -> bool:
        """Make ``buf[pos:pos+need]`` available; False when the stream ends first."""
        if len(self.buf) - self.pos >= need:
            return True
        keep = self.buf[self.pos :]
        self.base += self.pos
        self.pos = 0
        parts = [keep]
        have = len(keep)
        while have < need and not self.eof:
            want = need - have if self.exact else max(CHUNK, need - have)
            chunk = self.stream.read(want)
            if not chunk:
                self.eof = True
                break
            parts.append(chunk)
            have += len(chunk)
        self.buf = b"".join(parts)
        if self.on_refill is not None and len(parts) > 1:
            self.on_refill()
        return have >= need

    def skip(self, n: int) -> int:
        """Advance ``n`` bytes without keeping them; return how many could be skipped."""
        avail = len(self.buf) - self.pos
        if n <= avail:
            self.pos += n
            return n
        skipped = avail
        self.base += len(self.buf)
        self.buf = b""
        self.pos = 0
        while skipped < n and not self.eof:
            chunk = self.stream.read(min(CHUNK, n - skipped))
            if not chunk:
                self.eof = True
                break
            skipped += len(chunk)
            self.base += len(chunk)
        return skipped

    def at_eof(self) -> bool:
        """True when no byte is left at ``pos`` (reads ahead one byte if needed)."""
        return not self.fill(1)

    def unread(self) -> int:
        """Bytes read from the stream but not consumed by the interpreter."""
        return len(self.buf) - self.pos

    def splice(self) -> Spliced:
        """A stream that serves the unconsumed window, then the underlying stream."""
        return Spliced(self)

    def resync(self, spliced: Spliced) -> None:
        """Account for what a hook consumed through ``spliced``."""
        consumed = spliced.consumed
        avail = len(self.buf) - self.pos
        if consumed <= avail:
            self.pos += consumed
        else:
            self.base += len(self.buf) + (consumed - avail)
            self.buf = b""
            self.pos = 0


class Spliced(io.RawIOBase):
    """Read-only view handed to hooks: the window's unread bytes, then the stream itself."""

    def __init__(self, window: Window) -> None:
        super().__init__()
        self._window = window
        self._start = window.pos
        self.consumed = 0

    def readable(self) -> bool:  # noqa: D102 - io protocol
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # io's buffer type is wider than needed
        """Serve unread window bytes first, then read from the stream."""
        view = memoryview(buffer).cast("B")
        w = self._window
        at = self._start + self.consumed
        if at < len(w.buf):
            n = min(len(view), len(w.buf) - at)
            view[:n] = w.buf[at : at + n]
        else:
            data = w.stream.read(len(view))
            n = len(data)
            view[:n] = data
        self.consumed += n
        return n

    def tell(self) -> int:
        """Absolute offset of the next byte this view serves."""
        return self._window.base + self._start + self.consumed
