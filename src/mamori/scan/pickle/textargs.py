"""Decoding of inline arguments: protocol 0 text lines, integers, legacy strings.

A mixin of the interpreter: these read from its window and raise its ``Malformed`` exactly
where CPython's unpickler raises.
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING, Final

from mamori.scan.pickle.trace import Malformed
from mamori.scan.pickle.values import BigData

if TYPE_CHECKING:
    from mamori.scan.pickle.reader import Window

__all__ = ["MAX_LINE", "TextArgs"]

MAX_LINE: Final = 1 << 24
"""Longest text-protocol line (GLOBAL names, STRING literals) accepted before it is malformed."""


class TextArgs:
    """Argument decoders shared by the interpreter's opcodes."""

    w: Window

    def _bad(self, message: str, offset: int, rule_id: str = "MAM-PKL-010") -> Malformed:
        return Malformed(rule_id, message, offset)

    def _line(self, at: int) -> bytes:
        """Read a newline-terminated argument (without the newline)."""
        w = self.w
        while True:
            nl = w.buf.find(b"\n", w.pos)
            if nl >= 0:
                line = w.buf[w.pos : nl]
                w.pos = nl + 1
                return line
            have = len(w.buf) - w.pos
            if have > MAX_LINE:
                raise self._bad("text argument line longer than 16 MiB", at)
            if not w.fill(have + 1 if w.exact else have + 65536) and w.buf.find(b"\n", w.pos) < 0:
                raise self._bad("pickle data was truncated (no newline)", at)

    def _ascii(self, line: bytes, at: int) -> str:
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            raise self._bad("GLOBAL/INST/PERSID argument is not valid UTF-8", at) from None

    def _int(self, line: bytes, at: int) -> int:
        try:
            return int(line)
        except ValueError:
            raise self._bad("integer argument does not parse", at) from None

    def _long(self, data: bytes | BigData, at: int) -> int | BigData:
        if isinstance(data, BigData):
            return data
        del at
        return int.from_bytes(data, "little", signed=True)

    def _latin1(self, data: bytes | BigData, at: int) -> str | BigData:
        del at
        return data if isinstance(data, BigData) else data.decode("latin-1")

    def _string_nl(self, line: bytes, at: int) -> str:
        # protocol 0 STRING: a repr()-quoted byte string.
        if len(line) >= 2 and line[0] == line[-1] and line[:1] in (b"'", b'"'):  # noqa: PLR2004 - two quotes
            try:
                return codecs.escape_decode(line[1:-1])[0].decode("latin-1")
            except ValueError:
                raise self._bad("STRING argument does not decode", at) from None
        raise self._bad("STRING argument is not quoted", at)
