"""Tar member iteration with the archive-level checks, for the tar, .nemo and torch-tar handlers.

Headers are parsed by ``tarfile`` (ustar, GNU and pax), which never extracts anything here:
members are only described, and each regular member's data is handed out as a region of the
archive so the engine hashes it with ``pread``. Two guards make ``tarfile`` safe on hostile
input: pax and GNU long-name headers larger than ``max_header_bytes`` are refused before
``tarfile`` reads them into memory, and every exception it raises becomes a finding.
"""

from __future__ import annotations

import enum
import io
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, ClassVar, Final

from mamori.scan._internal.archive_names import check_member_name, link_target_escapes
from mamori.scan._internal.context import LimitExceeded, ScanContext
from mamori.scan._internal.source import Source
from mamori.scan._internal.zipread import region_of

__all__ = ["MemberKind", "TarMember", "iter_tar_members"]

_BLOCK: Final = 512
_TRAILER_PROBE: Final = 64 * 1024
# Header types whose body tarfile reads into memory in one piece.
_HEADER_TYPES: Final = frozenset(
    {
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
    }
)


class MemberKind(enum.Enum):
    """What a tar member is. Only ``FILE`` members carry content to scan."""

    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    DEVICE = "device"
    FIFO = "fifo"


@dataclass(frozen=True, slots=True)
class TarMember:
    """One member: its name, kind, declared size, link target and content (files only)."""

    name: str
    kind: MemberKind
    size: int
    header_offset: int
    linkname: str
    source: Source | None


class _Guard(io.RawIOBase):
    """Refuses single reads larger than the header limit (a forged pax size)."""

    def __init__(self, inner: IO[bytes], limit: int) -> None:
        super().__init__()
        self._inner = inner
        self._limit = limit

    def readable(self) -> bool:
        """Always readable (io protocol)."""
        return True

    def seekable(self) -> bool:
        """Seekable like the inner reader (io protocol)."""
        return True

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        """Seek the inner reader."""
        return self._inner.seek(pos, whence)

    def tell(self) -> int:
        """Position of the inner reader."""
        return self._inner.tell()

    def read(self, size: int | None = -1) -> bytes:
        """Read from the inner reader, refusing reads above the limit."""
        if size is None or size < 0 or size > self._limit:
            msg = f"tar header block of {size} bytes exceeds max_header_bytes"
            raise tarfile.HeaderError(msg)
        return self._inner.read(size)


def _bounded_tarinfo(limit: int) -> type[tarfile.TarInfo]:
    class _BoundedTarInfo(tarfile.TarInfo):
        max_header: ClassVar[int] = limit

        def _proc_member(self, archive: tarfile.TarFile) -> Any:
            # tarfile reads a pax or long-name body into memory in one piece; a forged size
            # would make it allocate gigabytes before any check of ours could run.
            if self.type in _HEADER_TYPES and self.size > self.max_header:
                msg = f"extended header of {self.size} bytes exceeds max_header_bytes"
                raise tarfile.HeaderError(msg)
            return super()._proc_member(archive)  # type: ignore[misc]  # private tarfile hook

    return _BoundedTarInfo


def _kind(info: tarfile.TarInfo) -> MemberKind:
    if info.issym():
        return MemberKind.SYMLINK
    if info.islnk():
        return MemberKind.HARDLINK
    if info.isdir():
        return MemberKind.DIRECTORY
    if info.ischr() or info.isblk():
        return MemberKind.DEVICE
    if info.isfifo():
        return MemberKind.FIFO
    # Regular, contiguous and unknown types: tarfile stores their data like a file's.
    return MemberKind.FILE


def iter_tar_members(source: Source, ctx: ScanContext) -> Iterator[TarMember]:
    """Yield every member of the tar archive in ``source``, reporting unsafe ones via ``ctx``.

    Reports traversal and absolute names, links (escaping ones louder), device and FIFO
    members, sparse files, truncation and data after the end-of-archive marker. Never raises
    for malformed input: a header ``tarfile`` rejects ends iteration with ``MAM-ARC-009``.

    Raises:
        LimitExceeded: more members than ``max_members`` (``MAM-LIM-003``).
    """
    size = source.size or 0
    limits = ctx.limits
    stream = source.open()
    raw = stream.raw if isinstance(stream, io.BufferedReader) else stream
    guarded = _Guard(raw, limits.max_header_bytes)
    count = 0
    end = 0
    try:
        tf = tarfile.open(  # noqa: SIM115 - closed in the finally below
            fileobj=guarded,
            mode="r:",
            tarinfo=_bounded_tarinfo(limits.max_header_bytes),
        )
    except (tarfile.TarError, OSError, ValueError, UnicodeError, OverflowError) as exc:
        stream.close()
        ctx.report("MAM-ARC-009", f"tar header cannot be parsed: {exc}", offset=0)
        return
    earlier_files: set[str] = set()
    try:
        while True:
            ctx.check_deadline()
            try:
                info = tf.next()
            except (tarfile.TarError, OSError, ValueError, UnicodeError, OverflowError) as exc:
                ctx.report("MAM-ARC-009", f"tar header cannot be parsed: {exc}", offset=tf.offset)
                return
            if info is None:
                break
            count += 1
            if count > limits.max_members:
                raise LimitExceeded("MAM-LIM-003", f"more than {limits.max_members} members")
            member = _describe(info, source, size, ctx, earlier_files)
            end = max(end, info.offset_data + info.size)
            if member is not None:
                if member.kind is MemberKind.FILE:
                    earlier_files.add(posixpath.normpath(member.name))
                yield member
        _check_trailer(source, tf.offset, size, ctx)
    finally:
        tf.close()
        stream.close()


def _describe(
    info: tarfile.TarInfo, source: Source, size: int, ctx: ScanContext, earlier_files: set[str]
) -> TarMember | None:
    name = info.name
    where = info.offset
    check_member_name(name, ctx, offset=where, name_rule="MAM-ARC-011")
    kind = _kind(info)
    # A hard link to a regular file stored earlier in the same archive is a copy of content
    # that was scanned as that member: tarfile extracts it from that member (it looks the
    # target up among the members before the link, names normalised), as dateutil's zoneinfo
    # tarball does for zone aliases. Any other link is reported.
    internal = kind is MemberKind.HARDLINK and posixpath.normpath(info.linkname) in earlier_files
    if kind in {MemberKind.SYMLINK, MemberKind.HARDLINK} and not internal:
        hard = kind is MemberKind.HARDLINK
        escapes = link_target_escapes(name, info.linkname, hard=hard)
        ctx.report(
            "MAM-ARC-003" if escapes else "MAM-ARC-004",
            f"{kind.value} member points to {info.linkname!r}",
            offset=where,
            evidence=f"{name!r} -> {info.linkname!r}",
        )
    elif kind in {MemberKind.DEVICE, MemberKind.FIFO}:
        ctx.report("MAM-ARC-005", f"{kind.value} member", offset=where, evidence=repr(name))
    if info.issparse():
        ctx.report(
            "MAM-ARC-008",
            "sparse member; its stored bytes are scanned, not the expanded file",
            offset=where,
            evidence=repr(name),
        )
    content: Source | None = None
    if kind is MemberKind.FILE:
        stored = info.size
        if info.offset_data + stored > size:
            ctx.report(
                "MAM-ARC-009",
                f"member declares {stored} bytes but the archive ends first",
                offset=where,
                evidence=repr(name),
            )
            stored = max(0, size - info.offset_data)
        content = region_of(source, info.offset_data, stored)
    return TarMember(
        name=name,
        kind=kind,
        size=info.size,
        header_offset=where,
        linkname=info.linkname,
        source=content,
    )


def _check_trailer(source: Source, end: int, size: int, ctx: ScanContext) -> None:
    """Report non-zero bytes after the end-of-archive marker (a hidden second payload)."""
    if end >= size:
        return
    with source.open() as stream:
        stream.seek(end)
        tail = stream.read(_TRAILER_PROBE)
    if tail.strip(b"\0"):
        ctx.report(
            "MAM-ARC-010",
            f"{size - end} bytes after the tar end-of-archive marker are not zero padding",
            offset=end,
        )
