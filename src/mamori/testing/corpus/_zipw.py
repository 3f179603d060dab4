"""A minimal zip writer that can lie: for container differential samples.

:mod:`zipfile` refuses (or warns about) exactly the archives these samples need: duplicate
names, a wrong CRC, a local header that disagrees with the central directory. Entries are
stored or deflated with a fixed 1980-01-01 timestamp so that output is deterministic.
Spec: https://pkware.cachefly.net/webdocs/casestudies/APPNOTE.TXT
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Entry", "read_members", "write_7z", "write_zip"]

_LOCAL = 0x04034B50
_CENTRAL = 0x02014B50
_END = 0x06054B50
_DOS_DATE_1980 = 0x21  # 1980-01-01: the earliest DOS date, used by reproducible zips
_STORED, _DEFLATED = 0, 8


@dataclass(frozen=True, slots=True)
class Entry:
    """One member. ``local_name`` / ``crc`` override what the headers declare."""

    name: str
    data: bytes
    deflate: bool = False
    local_name: str | None = None
    crc: int | None = None


def write_zip(entries: Iterable[Entry], *, prefix: bytes = b"") -> bytes:
    """Serialise ``entries`` after ``prefix``; offsets count from the start of the output."""
    out = bytearray(prefix)
    central = bytearray()
    count = 0
    for entry in entries:
        payload = entry.data
        method = _STORED
        if entry.deflate:
            comp = zlib.compressobj(6, zlib.DEFLATED, -15)
            payload = comp.compress(entry.data) + comp.flush()
            method = _DEFLATED
        crc = zlib.crc32(entry.data) if entry.crc is None else entry.crc
        name = entry.name.encode()
        local_name = name if entry.local_name is None else entry.local_name.encode()
        offset = len(out)
        out += struct.pack(
            "<IHHHHHIIIHH",
            _LOCAL, 20, 0, method, 0, _DOS_DATE_1980,
            crc, len(payload), len(entry.data), len(local_name), 0,
        )  # fmt: skip
        out += local_name + payload
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            _CENTRAL, 20, 20, 0, method, 0, _DOS_DATE_1980,
            crc, len(payload), len(entry.data), len(name), 0, 0, 0, 0, 0, offset,
        )  # fmt: skip
        central += name
        count += 1
    cd_offset = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", _END, 0, 0, count, count, len(central), cd_offset, 0)
    return bytes(out)


def read_members(data: bytes) -> list[tuple[str, bytes]]:
    """The members of a well-formed zip (one the real library wrote), in directory order.

    Reading members is not loading them: the bytes are only copied into a new archive.
    """
    import io  # noqa: PLC0415 - keep module import cheap
    import zipfile  # noqa: PLC0415

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


_EPOCH_FILETIME = 116_444_736_000_000_000
"""1970-01-01 as a Windows FILETIME (100 ns ticks since 1601), 7z's timestamp unit."""


def write_7z(path: Path, data: bytes, arcname: str) -> None:
    """Write a one-member 7z archive with fixed timestamps (py7zr stamps "now")."""
    import py7zr  # noqa: PLC0415 - optional dependency
    from py7zr.helpers import ArchiveTimestamp  # noqa: PLC0415

    with py7zr.SevenZipFile(path, "w") as archive:
        archive.writestr(data, arcname)
        for member in archive.files:
            # py7zr has no public way to set times on writestr; the dict is what close() reads.
            info = member._file_info  # noqa: SLF001
            for key in ("creationtime", "lastwritetime", "lastaccesstime"):
                info[key] = ArchiveTimestamp(_EPOCH_FILETIME)
