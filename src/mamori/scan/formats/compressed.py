"""Single compressed streams: gzip, bzip2, xz, lzma-alone, zlib, zstd and LZ4 frames.

Each is decompressed as a stream into exactly one child, ``<decompressed>``, which the engine
then detects and scans like any file (joblib's compressed dumps are such streams around a
pickle; ``compress="lz4"`` writes an LZ4 frame). Output counts against the decompression
budget and ratio; a truncated stream and bytes after the stream are findings.
"""

from __future__ import annotations

import bz2
import io
import lzma
import re
import struct
import zlib
from collections.abc import Callable
from typing import ClassVar, Final

from mamori.findings import FileFormat
from mamori.scan._internal.source import CHUNK, Source, StreamSource
from mamori.scan._internal.zipformat import region_of
from mamori.scan._internal.zipstream import (
    Decoder,
    LimitedDecompressor,
    StreamRules,
    scan_child_guarded,
    zlib_decoder,
    zstd_decoder_factory,
)
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext

__all__ = [
    "Bzip2Handler",
    "GzipHandler",
    "JoblibZfileHandler",
    "Lz4Handler",
    "LzmaHandler",
    "XzHandler",
    "ZlibHandler",
    "ZstdHandler",
]

CHILD_NAME: Final = "<decompressed>"
_RULES: Final = StreamRules(
    corrupt="MAM-ARC-009", size_mismatch="MAM-ARC-009", trailing="MAM-ARC-010"
)
_GZIP: Final = b"\x1f\x8b"
_XZ: Final = b"\xfd7zXZ\x00"
_ZSTD: Final = b"\x28\xb5\x2f\xfd"
_LZ4: Final = b"\x04\x22\x4d\x18"
_LZ4_VERSION_MASK: Final = 0xC0
_LZ4_VERSION_1: Final = 0x40
_BZ_BLOCK: Final = (b"1AY&SY", b"\x17rE8P\x90")
_LZMA_PROPS_MAX: Final = 9 * 5 * 5  # lc < 9, lp < 5, pb < 5 (the .lzma header's first byte)
_LZMA_DICT_MIN: Final = 1 << 12
_LZMA_DICT_MAX: Final = 3 << 29
_UNKNOWN_SIZE: Final = (1 << 64) - 1
_ZLIB_CHECK_BYTES: Final = 1024


class _StreamHandler(FormatHandler):
    """Decompresses the whole source into one child with the engine's limits."""

    restart: ClassVar[bytes | None] = None
    """Magic of a follow-on stream that the format's tools decode too (multi-member gzip)."""

    def decoder(self) -> Callable[[], Decoder] | None:
        """The decoder factory, or ``None`` when the codec is not available."""
        raise NotImplementedError

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Decompress into one child, ``<decompressed>``, scanned by content."""
        factory = self.decoder()
        if factory is None:
            ctx.report(
                "MAM-ARC-007",
                f"{self.format.value} decoder not installed; stream not scanned",
                offset=0,
            )
            return
        new_decoder = factory

        def open_stream() -> io.BufferedReader:
            reader = LimitedDecompressor(
                source.open(), new_decoder, ctx=ctx, rules=_RULES, restart=self.restart
            )
            return io.BufferedReader(reader, CHUNK)

        scan_child_guarded(ctx, CHILD_NAME, StreamSource(open_stream))


class GzipHandler(_StreamHandler):
    """gzip (RFC 1952), including multi-member files as ``gzip -d`` reads them."""

    format: ClassVar[FileFormat] = FileFormat.GZIP
    restart: ClassVar[bytes | None] = _GZIP

    def sniff(self, probe: Probe) -> bool:
        """Magic, deflate method, and no reserved flag bits."""
        h = probe.head
        return len(h) >= 10 and h[:3] == _GZIP + b"\x08" and not h[3] & 0xE0  # noqa: PLR2004 - header size

    def decoder(self) -> Callable[[], Decoder]:
        """Zlib with gzip framing (wbits 16+15)."""
        return zlib_decoder(16 + zlib.MAX_WBITS)


class Bzip2Handler(_StreamHandler):
    """bzip2, including concatenated streams (``bzip2 -d`` and ``bz2.open`` read them all)."""

    format: ClassVar[FileFormat] = FileFormat.BZIP2
    restart: ClassVar[bytes | None] = b"BZh"

    def sniff(self, probe: Probe) -> bool:
        """``BZh``, a block size digit, then a block or end-of-stream magic."""
        h = probe.head
        return h[:3] == b"BZh" and h[3:4] in b"123456789" and h[4:10] in _BZ_BLOCK and len(h) > 3  # noqa: PLR2004 - magic length

    def decoder(self) -> Callable[[], Decoder]:
        """The stdlib bzip2 decompressor."""
        return bz2.BZ2Decompressor


class XzHandler(_StreamHandler):
    """xz container (``lzma.FORMAT_XZ``), concatenated streams included."""

    format: ClassVar[FileFormat] = FileFormat.XZ
    restart: ClassVar[bytes | None] = _XZ

    def sniff(self, probe: Probe) -> bool:
        """The six-byte xz magic."""
        return probe.head.startswith(_XZ)

    def decoder(self) -> Callable[[], Decoder]:
        """The stdlib xz decompressor."""
        return lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ)


class LzmaHandler(_StreamHandler):
    """Legacy ``.lzma`` ("LZMA alone"), as ``joblib.dump(compress="lzma")`` writes it.

    The format has no magic; the 13-byte header (properties, dictionary size, length) is
    checked for values the reference encoder can produce.
    """

    format: ClassVar[FileFormat] = FileFormat.LZMA

    def sniff(self, probe: Probe) -> bool:
        """Valid properties byte, a standard dictionary size and a plausible length."""
        h = probe.head
        if len(h) < 13 or h[0] >= _LZMA_PROPS_MAX:  # noqa: PLR2004 - header size
            return False
        dict_size, length = struct.unpack_from("<LQ", h, 1)
        if not _LZMA_DICT_MIN <= dict_size <= _LZMA_DICT_MAX:
            return False
        # Encoders write 2^n or 2^n + 2^(n-1); anything else is almost surely not lzma.
        low = dict_size & -dict_size
        if dict_size not in {low, low * 3}:
            return False
        return bool(length == _UNKNOWN_SIZE or length < 1 << 48)

    def decoder(self) -> Callable[[], Decoder]:
        """The stdlib decompressor in ``FORMAT_ALONE`` mode."""
        return lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE)


class ZlibHandler(_StreamHandler):
    """A raw zlib stream (RFC 1950), as ``joblib.dump(compress="zlib")`` writes it.

    Two bytes of header are weak evidence, so detection also inflates the first bytes.
    """

    format: ClassVar[FileFormat] = FileFormat.ZLIB

    def sniff(self, probe: Probe) -> bool:
        """CM=8, window <= 32 KiB, no preset dictionary, FCHECK valid, and the data inflates."""
        h = probe.head
        if len(h) < 3:  # noqa: PLR2004 - header + one byte of data
            return False
        cmf, flg = h[0], h[1]
        if cmf & 0x0F != 8 or cmf >> 4 > 7 or flg & 0x20 or (cmf * 256 + flg) % 31:  # noqa: PLR2004 - RFC 1950 fields
            return False
        try:
            zlib.decompressobj().decompress(h, _ZLIB_CHECK_BYTES)
        except zlib.error:
            return False
        return True

    def decoder(self) -> Callable[[], Decoder]:
        """Zlib with its two-byte header and Adler-32 trailer."""
        return zlib_decoder(zlib.MAX_WBITS)


_ZFILE_PREFIX: Final = b"ZF"
_ZFILE_LENGTH: Final = 19  # len(hex(2**64)): joblib's _MAX_LEN
_ZFILE_HEADER: Final = re.compile(rb"ZF0x[0-9a-fA-F]{1,17} *")


class JoblibZfileHandler(ZlibHandler):
    """joblib < 0.10 compressed dumps: ``ZF``, a hex length padded to 19 bytes, then zlib.

    ``joblib.numpy_pickle_compat.read_zfile`` skips the 21-byte header and one optional space,
    then inflates the rest; ``joblib.load`` still reads such files. The inflated pickle (and
    its legacy array wrappers) is scanned by content like any other stream.
    """

    # The header is skipped by position, so one-shot streams are spooled first.
    needs_random_access: ClassVar[bool] = True

    def sniff(self, probe: Probe) -> bool:
        """The prefix, a hex length padded as joblib pads it, then a zlib stream."""
        header = probe.head[: len(_ZFILE_PREFIX) + _ZFILE_LENGTH]
        if len(header) < len(_ZFILE_PREFIX) + _ZFILE_LENGTH or not _ZFILE_HEADER.fullmatch(header):
            return False
        rest = probe.head[len(header) :]
        rest = rest.removeprefix(b" ")
        return super().sniff(Probe(rest, probe.tail, None, probe.name))

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Inflate what follows the header, as ``read_zfile`` does."""
        with source.open() as stream:
            stream.seek(len(_ZFILE_PREFIX) + _ZFILE_LENGTH)
            skip = 1 if stream.read(1) == b" " else 0
        start = len(_ZFILE_PREFIX) + _ZFILE_LENGTH + skip
        super().scan(region_of(source, start, (source.size or 0) - start), ctx)


class ZstdHandler(_StreamHandler):
    """Zstandard frames; decoded only when ``backports.zstd`` is installed."""

    format: ClassVar[FileFormat] = FileFormat.ZSTD
    restart: ClassVar[bytes | None] = _ZSTD

    def sniff(self, probe: Probe) -> bool:
        """The zstd frame magic."""
        return probe.head.startswith(_ZSTD)

    def decoder(self) -> Callable[[], Decoder] | None:
        """The zstd decoder when available."""
        return zstd_decoder_factory()


class Lz4Handler(_StreamHandler):
    """LZ4 frames (what ``joblib.dump(..., compress="lz4")`` writes); needs ``lz4``."""

    format: ClassVar[FileFormat] = FileFormat.LZ4
    restart: ClassVar[bytes | None] = _LZ4

    def sniff(self, probe: Probe) -> bool:
        """The frame magic, then a frame descriptor of format version 01."""
        h = probe.head
        if len(h) <= len(_LZ4) or not h.startswith(_LZ4):
            return False
        return h[len(_LZ4)] & _LZ4_VERSION_MASK == _LZ4_VERSION_1

    def decoder(self) -> Callable[[], Decoder] | None:
        """The LZ4 frame decoder when ``lz4`` is installed."""
        try:
            from lz4.frame import LZ4FrameDecompressor  # noqa: PLC0415 - optional dependency
        except ImportError:
            return None
        factory: Callable[[], Decoder] = LZ4FrameDecompressor
        return factory
