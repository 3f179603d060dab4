"""Zip structures and the cheap, read-only helpers around them.

The record layouts (APPNOTE.TXT 4.3), positional reads that do not pull a buffer per header,
sub-regions of a source, extra-field decoding, and :func:`zip_names_from_probe` for the
``sniff()`` of zip-based formats. The strict parser itself is :mod:`.zipread`.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from typing import IO, Final

from mamori.scan._internal.context import Probe
from mamori.scan._internal.source import CHUNK, BytesSource, FileRegion, Source

__all__ = [
    "CENTRAL",
    "CENTRAL_SIG",
    "DESCRIPTOR_SIG",
    "EOCD",
    "EOCD_SIG",
    "FLAG_DESCRIPTOR",
    "FLAG_UTF8",
    "LOCAL",
    "LOCAL_SIG",
    "MAX_COMMENT",
    "U16",
    "U32",
    "Z64_EOCD",
    "Z64_EOCD_SIG",
    "Z64_LOCATOR",
    "Z64_LOCATOR_SIG",
    "PositionalReader",
    "find_all",
    "region_of",
    "unicode_path_extra",
    "zip64_extra",
    "zip_names_from_probe",
]

LOCAL_SIG: Final = b"PK\x03\x04"
CENTRAL_SIG: Final = b"PK\x01\x02"
EOCD_SIG: Final = b"PK\x05\x06"
Z64_LOCATOR_SIG: Final = b"PK\x06\x07"
Z64_EOCD_SIG: Final = b"PK\x06\x06"
DESCRIPTOR_SIG: Final = b"PK\x07\x08"

EOCD = struct.Struct("<4s4H2LH")
Z64_LOCATOR = struct.Struct("<4sLQL")
Z64_EOCD = struct.Struct("<4sQ2H2L4Q")
CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
LOCAL = struct.Struct("<4s2B4HL2L2H")
MAX_COMMENT: Final = 0xFFFF
U16: Final = 0xFFFF
U32: Final = 0xFFFFFFFF

FLAG_DESCRIPTOR: Final = 0x0008
FLAG_UTF8: Final = 0x0800


class PositionalReader:
    """Positional reads on a random-access source without read-ahead.

    A buffered reader would pull a whole buffer (1 MiB) for each 30-byte local header and so
    read most of a large archive twice; reading through the raw reader costs one ``pread``.
    """

    def __init__(self, source: Source) -> None:
        if not source.random_access or source.size is None:
            msg = "a zip directory can only be read from a random-access source"
            raise ValueError(msg)
        self.size: int = source.size
        self._data: bytes | None = source.data if isinstance(source, BytesSource) else None
        self._stream: IO[bytes] | None = None
        self._raw: IO[bytes] | io.RawIOBase | None = None
        if self._data is None:
            self._stream = source.open()
            raw = self._stream.raw if isinstance(self._stream, io.BufferedReader) else None
            self._raw = raw if raw is not None else self._stream

    def read_at(self, offset: int, n: int) -> bytes:
        """Read up to ``n`` bytes at ``offset``; fewer only at the end of the source."""
        if offset < 0 or n <= 0 or offset >= self.size:
            return b""
        n = min(n, self.size - offset)
        if self._data is not None:
            return self._data[offset : offset + n]
        assert self._raw is not None
        self._raw.seek(offset)
        parts: list[bytes] = []
        while n > 0:
            chunk = self._raw.read(n)
            if not chunk:
                break
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        """Close the underlying stream, if one was opened."""
        if self._stream is not None:
            self._stream.close()


class _SubSource(Source):
    """A byte range of a random-access source that is neither a file region nor bytes."""

    random_access = True

    def __init__(self, parent: Source, offset: int, length: int) -> None:
        self._parent = parent
        self._offset = offset
        self.size = length

    def open(self) -> IO[bytes]:
        stream = self._parent.open()
        stream.seek(self._offset)
        assert self.size is not None
        return io.BufferedReader(_Bounded(stream, self.size), CHUNK)


class _Bounded(io.RawIOBase):
    def __init__(self, inner: IO[bytes], length: int) -> None:
        super().__init__()
        self._inner = inner
        self._left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]  # io's buffer type is wider than needed
        view = memoryview(buffer).cast("B")
        data = self._inner.read(min(len(view), self._left))
        view[: len(data)] = data
        self._left -= len(data)
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


def region_of(source: Source, offset: int, length: int) -> Source:
    """The bytes ``[offset, offset+length)`` of a random-access source, without copying files.

    File regions stay file regions (hashed with ``pread``); bytes are sliced; anything else
    (a spooled stream) is read through a bounded window.
    """
    if isinstance(source, FileRegion):
        return FileRegion(source.path, source.offset + offset, length)
    if isinstance(source, BytesSource):
        return BytesSource(memoryview(source.data)[offset : offset + length])
    return _SubSource(source, offset, length)


def find_all(data: bytes, needle: bytes) -> list[int]:
    out: list[int] = []
    pos = data.find(needle)
    while pos >= 0:
        out.append(pos)
        pos = data.find(needle, pos + 1)
    return out


def _extra_fields(extra: bytes) -> Iterator[tuple[int, bytes]] | None:
    fields: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if pos + 4 + length > len(extra):
            return None
        fields.append((tag, extra[pos + 4 : pos + 4 + length]))
        pos += 4 + length
    return iter(fields)


def zip64_extra(extra: bytes) -> list[int] | None:
    """The 64-bit values of the ZIP64 extra field (``[]`` when absent, ``None`` if corrupt)."""
    fields = _extra_fields(extra)
    if fields is None:
        return None
    for tag, body in fields:
        if tag == 0x0001:
            n = len(body) // 8
            return list(struct.unpack_from(f"<{n}Q", body))
    return []


def unicode_path_extra(extra: bytes) -> str | None:
    """The Info-ZIP unicode path (0x7075) that 7-Zip and unzip prefer over the header name."""
    fields = _extra_fields(extra)
    for tag, body in fields or ():
        if tag == 0x7075 and len(body) > 5:  # noqa: PLR2004 - version byte + CRC-32
            return body[5:].decode("utf-8", "replace")
    return None


def zip_names_from_probe(probe: Probe) -> list[str] | None:
    """Member names read cheaply from a probe, or ``None`` when they cannot be found.

    Uses the central directory when it lies entirely inside ``probe.tail``, else walks the
    local headers in ``probe.head``. Meant for ``sniff()`` of zip-based formats: never raises,
    never reads the file, and may return a partial list for a large archive.
    """
    try:
        names = _names_from_tail(probe)
        if names is None:
            names = _names_from_head(probe.head)
    except (struct.error, ValueError, IndexError):
        return None
    return names


def _names_from_tail(probe: Probe) -> list[str] | None:
    tail, size = probe.tail, probe.size
    if tail is None or size is None:
        return None
    pos = tail.rfind(EOCD_SIG)
    if pos < 0 or pos + EOCD.size > len(tail):
        return None
    _, _, _, _, n_total, cd_size, cd_offset, _ = EOCD.unpack_from(tail, pos)
    locator = pos - Z64_LOCATOR.size
    if locator >= 0 and tail[locator : locator + 4] == Z64_LOCATOR_SIG:
        # A ZIP64 end record sits between the directory and the classic end record whether
        # or not the classic fields are saturated (torch always writes one); its fields win.
        z64 = locator - Z64_EOCD.size
        if z64 < 0 or tail[z64 : z64 + 4] != Z64_EOCD_SIG:
            return None
        n_total, cd_size, cd_offset = Z64_EOCD.unpack_from(tail, z64)[7:10]
    elif n_total == U16 or U32 in {cd_size, cd_offset}:
        return None
    # Directory position from its declared offset (relative to the tail), never from the end
    # record's position: prepended bytes make the two disagree, and then the head walk decides.
    cd_start = cd_offset - (size - len(tail))
    end = cd_start + cd_size
    if cd_start < 0 or end > len(tail):
        return None
    names: list[str] = []
    cur = cd_start
    while cur + CENTRAL.size <= end and tail[cur : cur + 4] == CENTRAL_SIG:
        fields = CENTRAL.unpack_from(tail, cur)
        flags, name_len, extra_len, comment_len = fields[5], fields[12], fields[13], fields[14]
        raw = tail[cur + CENTRAL.size : cur + CENTRAL.size + name_len]
        names.append(raw.decode("utf-8" if flags & FLAG_UTF8 else "cp437", "replace"))
        cur += CENTRAL.size + name_len + extra_len + comment_len
    return names if names or n_total == 0 else None


def _names_from_head(head: bytes) -> list[str] | None:
    if not head.startswith(LOCAL_SIG):
        return None
    names: list[str] = []
    pos = 0
    while pos + LOCAL.size <= len(head) and head[pos : pos + 4] == LOCAL_SIG:
        fields = LOCAL.unpack_from(head, pos)
        flags, csize, name_len, extra_len = fields[3], fields[8], fields[10], fields[11]
        start = pos + LOCAL.size
        if start + name_len > len(head):
            break
        raw = head[start : start + name_len]
        names.append(raw.decode("utf-8" if flags & FLAG_UTF8 else "cp437", "replace"))
        if flags & FLAG_DESCRIPTOR and csize == 0:
            break  # size unknown until the data descriptor; cannot skip ahead cheaply
        if csize == U32:
            z64 = zip64_extra(head[start + name_len : start + name_len + extra_len]) or []
            if len(z64) < 2:  # noqa: PLR2004 - size and compressed size
                break
            csize = z64[1]
        pos = start + name_len + extra_len + csize
    return names
