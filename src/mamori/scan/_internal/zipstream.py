"""Streaming decompression with decompression-bomb limits, for zip members and raw streams.

Output is produced in bounded chunks (``max_length``), so a 10 GB run of zeros never sits in
memory; every chunk is counted against the scan's decompression budget and the expansion
ratio before the consumer sees it. Problems with the data (corrupt, truncated, a length that
differs from the declaration, trailing bytes) are raised as :class:`DataError`, a
:class:`LimitExceeded` carrying a rule id, so that the engine reports them against the member
whatever handler happens to be reading when they surface.
"""

from __future__ import annotations

import bz2
import enum
import io
import lzma
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Final, Protocol

from mamori.findings import FileFormat, Location
from mamori.scan._internal.context import LimitExceeded, ScanContext
from mamori.scan._internal.source import CHUNK, Source
from mamori.scan.rules import rule

__all__ = [
    "SUPPORTED_METHODS",
    "DataError",
    "Decoder",
    "LimitedDecompressor",
    "Method",
    "StreamRules",
    "open_decompressed",
    "scan_child_guarded",
    "zlib_decoder",
    "zstd_decoder_factory",
]


class Method(enum.IntEnum):
    """Zip compression methods mamori decodes (APPNOTE 4.4.5)."""

    STORED = 0
    DEFLATED = 8
    BZIP2 = 12
    LZMA = 14


SUPPORTED_METHODS: Final = frozenset(int(m) for m in Method)


class DataError(LimitExceeded):
    """Compressed data is corrupt, truncated, mis-sized or followed by garbage.

    A subclass of :class:`LimitExceeded` on purpose: the engine turns it into a finding of
    ``rule_id`` at the member being read, which is exactly where the problem is.
    """


class Decoder(Protocol):
    """The incremental API shared by ``bz2``, ``lzma`` and ``zstd`` decompressor objects."""

    @property
    def eof(self) -> bool:
        """True once the end-of-stream marker was decoded."""

    @property
    def needs_input(self) -> bool:
        """False while output is pending from input already given."""

    @property
    def unused_data(self) -> bytes:
        """Input found after the end of the stream."""

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        """Decode ``data``, returning at most ``max_length`` bytes."""


class _Zlib:
    """``zlib.decompressobj`` adapted to the :class:`Decoder` protocol.

    zlib keeps unconsumed input in ``unconsumed_tail`` instead of an internal buffer.
    """

    def __init__(self, wbits: int) -> None:
        self._d = zlib.decompressobj(wbits)

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def needs_input(self) -> bool:
        return not self._d.unconsumed_tail

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        try:
            return self._d.decompress(self._d.unconsumed_tail + data, max(max_length, 0))
        except zlib.error as exc:
            raise _CorruptError(str(exc)) from exc


class _ZipLzma:
    """LZMA as zip stores it: a 4-byte version/size header, the properties, then raw LZMA1.

    ``zipfile`` decodes it the same way (``zipfile.LZMADecompressor``); the private
    ``lzma._decode_filter_properties`` is what it uses too.
    """

    def __init__(self) -> None:
        self._head = b""
        self._d: lzma.LZMADecompressor | None = None

    @property
    def eof(self) -> bool:
        return self._d is not None and self._d.eof

    @property
    def needs_input(self) -> bool:
        return self._d is None or self._d.needs_input

    @property
    def unused_data(self) -> bytes:
        return b"" if self._d is None else self._d.unused_data

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if self._d is None:
            self._head += data
            if len(self._head) < 4:  # noqa: PLR2004 - version (2) + properties size (2)
                return b""
            (psize,) = struct.unpack_from("<H", self._head, 2)
            if len(self._head) < 4 + psize:
                return b""
            try:
                filt = lzma._decode_filter_properties(  # type: ignore[attr-defined]  # noqa: SLF001 - as zipfile does
                    lzma.FILTER_LZMA1, self._head[4 : 4 + psize]
                )
            except lzma.LZMAError as exc:
                raise _CorruptError(str(exc)) from exc
            self._d = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[filt])
            data, self._head = self._head[4 + psize :], b""
        out: bytes = self._d.decompress(data, max_length)
        return out


class _CorruptError(Exception):
    pass


def zstd_decoder_factory() -> Callable[[], Decoder] | None:
    """A factory of zstd decoders when ``backports.zstd`` is importable, else ``None``."""
    try:
        from backports import zstd  # noqa: PLC0415 - optional dependency
    except ImportError:
        return None
    return zstd.ZstdDecompressor


@dataclass(frozen=True, slots=True)
class StreamRules:
    """Which rule reports which data problem (zip members and raw streams differ)."""

    corrupt: str
    size_mismatch: str
    trailing: str


ZIP_RULES: Final = StreamRules(
    corrupt="MAM-ZIP-012", size_mismatch="MAM-ZIP-011", trailing="MAM-ZIP-011"
)


class LimitedDecompressor(io.RawIOBase):
    """A one-shot reader of decompressed bytes that enforces the scan's bomb limits.

    ``restart`` is the magic of a follow-on stream (multi-member gzip, concatenated bzip2/xz):
    when the stream ends and the rest of the input starts with it, decoding continues with a
    fresh decoder, as the command-line tools do. Any other leftover input is trailing data.
    ``declared_size`` (zip) must equal the output length; without it, LZMA data that has no
    end marker cannot end cleanly and is reported as truncated.
    """

    def __init__(
        self,
        compressed: IO[bytes],
        new_decoder: Callable[[], Decoder],
        *,
        ctx: ScanContext,
        rules: StreamRules,
        declared_size: int | None = None,
        restart: bytes | None = None,
        end_without_marker: bool = False,
    ) -> None:
        super().__init__()
        self._in = compressed
        self._new_decoder = new_decoder
        self._d = new_decoder()
        self._ctx = ctx
        self._rules = rules
        self._declared = declared_size
        self._restart = restart
        self._end_without_marker = end_without_marker
        self._consumed = 0
        self._produced = 0
        self._pending = b""
        self._done = False
        self._error: LimitExceeded | None = None

    def readable(self) -> bool:
        """Always readable (io protocol)."""
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # io's buffer type is wider than needed
        """Decode up to ``len(buffer)`` bytes; a limit or data error is raised on every call."""
        if self._error is not None:
            raise self._error
        view = memoryview(buffer).cast("B")
        try:
            data = self._next(len(view))
        except _CorruptError as exc:
            self._error = DataError(self._rules.corrupt, f"corrupt compressed data: {exc}")
            raise self._error from exc
        except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
            self._error = DataError(self._rules.corrupt, f"corrupt compressed data: {exc}")
            raise self._error from exc
        except LimitExceeded as exc:
            self._error = exc
            raise
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """Close the compressed input."""
        self._in.close()
        super().close()

    def _read_input(self) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        data = self._in.read(CHUNK)
        self._consumed += len(data)
        return data

    def _next(self, want: int) -> bytes:
        if self._done:
            return b""
        while True:
            if self._d.eof:
                if self._continue_after_eof():
                    continue
                self._finish()
                return b""
            chunk = self._read_input() if self._d.needs_input else b""
            out = self._d.decompress(chunk, want)
            if out:
                return self._account(out)
            if not chunk and self._d.needs_input and not self._d.eof:
                if self._end_without_marker and self._produced == self._declared:
                    self._finish()
                    return b""
                raise DataError(
                    self._rules.corrupt,
                    f"compressed stream is truncated after {self._produced} bytes",
                )

    def _continue_after_eof(self) -> bool:
        rest = self._d.unused_data or self._pending or self._read_input()
        self._pending = rest
        if not rest:
            return False
        if self._restart is not None:
            while len(rest) < len(self._restart):
                more = self._in.read(CHUNK)
                self._consumed += len(more)
                if not more:
                    break
                rest += more
            self._pending = rest
            if rest.startswith(self._restart):
                self._d = self._new_decoder()
                return True
        return False

    def _finish(self) -> None:
        self._done = True
        trailing = len(self._pending)
        while chunk := self._in.read(CHUNK):
            self._consumed += len(chunk)
            trailing += len(chunk)
        if self._declared is not None and self._produced != self._declared:
            raise DataError(
                self._rules.size_mismatch,
                f"decompressed to {self._produced} bytes but {self._declared} were declared",
            )
        if trailing:
            raise DataError(
                self._rules.trailing,
                f"{trailing} bytes follow the end of the compressed stream",
            )

    def _account(self, out: bytes) -> bytes:
        self._produced += len(out)
        self._ctx.account_decompressed(len(out))
        limits = self._ctx.limits
        if self._produced > limits.ratio_floor and self._produced > (
            limits.max_compression_ratio * max(self._consumed, 1)
        ):
            raise LimitExceeded(
                "MAM-LIM-006",
                f"expands more than {limits.max_compression_ratio}x "
                f"({self._consumed} -> {self._produced}+ bytes); decompression stopped",
            )
        return out


def open_decompressed(
    compressed: Source,
    method: Method,
    *,
    compressed_size: int,
    declared_size: int,
    ctx: ScanContext,
) -> IO[bytes]:
    """Open a zip member's compressed bytes as a buffered, limit-enforcing decompressed stream."""
    del compressed_size  # the region already has exactly this length
    factories: dict[Method, Callable[[], Decoder]] = {
        Method.DEFLATED: lambda: _Zlib(-15),
        Method.BZIP2: bz2.BZ2Decompressor,
        Method.LZMA: _ZipLzma,
    }
    reader = LimitedDecompressor(
        compressed.open(),
        factories[method],
        ctx=ctx,
        rules=ZIP_RULES,
        declared_size=declared_size,
        end_without_marker=method == Method.LZMA,
    )
    return io.BufferedReader(reader, CHUNK)


def zlib_decoder(wbits: int) -> Callable[[], Decoder]:
    """A factory of zlib-family decoders (``wbits`` as for ``zlib.decompressobj``)."""
    return lambda: _Zlib(wbits)


def scan_child_guarded(
    ctx: ScanContext,
    name: str,
    source: Source,
    *,
    opaque: bool = False,
    expected_crc32: int | None = None,
    expected_format: FileFormat | None = None,
) -> FileFormat:
    """``ctx.scan_child`` that reports a member's limit or data error and carries on.

    A bomb or corrupt stream in one member must not hide the members after it, so such errors
    become a finding on that member. Running out of members or time still ends the scan.
    """
    try:
        return ctx.scan_child(
            name,
            source,
            opaque=opaque,
            expected_crc32=expected_crc32,
            expected_format=expected_format,
        )
    except LimitExceeded as exc:
        if exc.rule_id in {"MAM-LIM-003", "MAM-LIM-004"}:
            raise
        # Same location and message as the engine uses when the member's own handler hit the
        # error first, so the two emissions collapse into one finding.
        location = Location((*ctx.member_path, name))
        ctx.emit(rule(exc.rule_id).finding(exc.message, location=location))
        return FileFormat.UNKNOWN
