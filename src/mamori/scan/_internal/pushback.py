"""Put bytes already read back in front of a one-shot stream.

Handlers peek one byte after a pickle to learn whether anything follows it; when something
does, the whole remainder (peeked byte included) goes to the pickle analyser, which may be
reading a decompressor that cannot seek back.
"""

from __future__ import annotations

import io
from typing import IO

__all__ = ["pushback"]


class _Pushback(io.RawIOBase):
    def __init__(self, first: bytes, rest: IO[bytes]) -> None:
        super().__init__()
        self._first = first
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # io's buffer type is wider than needed
        view = memoryview(buffer).cast("B")
        if self._first:
            n = min(len(view), len(self._first))
            view[:n] = self._first[:n]
            self._first = self._first[n:]
            return n
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)


def pushback(first: bytes, rest: IO[bytes]) -> IO[bytes]:
    """A reader that yields ``first``, then whatever ``rest`` still holds."""
    return io.BufferedReader(_Pushback(first, rest))
