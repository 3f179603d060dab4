"""7z reading through py7zr, kept out of :mod:`mamori.scan.formats.sevenzip` for start-up time.

py7zr (and the codec libraries it imports) costs ~0.15 s to import; the handler imports this
module only when a 7z archive is actually scanned. Declared sizes are checked before anything
is decompressed.

py7zr decodes into in-memory writers that spill to an unlinked temporary file past
``max_spool_memory`` (the :class:`py7zr.io.WriterFactory` hook), never to paths named by the
archive; then each member is scanned by content. Encrypted archives and members cannot be
analysed and are findings.
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import IO, Final

import py7zr
import py7zr.exceptions
import py7zr.io

from mamori.scan._internal.archive_names import check_member_name, link_target_escapes
from mamori.scan._internal.context import LimitExceeded, ScanContext
from mamori.scan._internal.source import CHUNK, BytesSource, RegionReader, Source
from mamori.scan._internal.zipstream import scan_child_guarded

__all__ = ["scan_seven_zip"]

_LINK_TARGET_MAX: Final = 4096
# py7zr raises these (and the stdlib codec errors) on malformed archives.
_PARSE_ERRORS: Final = (
    py7zr.exceptions.ArchiveError,
    py7zr.exceptions.Bad7zFile,
    py7zr.exceptions.DecompressionError,
    py7zr.exceptions.UnsupportedCompressionMethodError,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    MemoryError,
    NotImplementedError,
)


class _Budget:
    """The bytes every member of one archive may produce together: what its header declares.

    The header's sizes were checked against the limits before decoding started; a decoder that
    produces more than that is a bomb the check did not see, so it is stopped here.
    """

    def __init__(self, declared: int) -> None:
        self.declared = declared
        self.used = 0

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.declared:
            msg = f"7z members decode to more than the {self.declared} bytes the header declares"
            raise LimitExceeded("MAM-LIM-001", msg)


class _SpoolWriter(py7zr.io.Py7zIO):
    """Collects one member in memory, spilling to an unlinked temporary file when large."""

    def __init__(self, spill_at: int, budget: _Budget) -> None:
        self._buf: IO[bytes] = io.BytesIO()
        self._spill_at = spill_at
        self._budget = budget
        self._size = 0
        self.on_disk = False

    def write(self, s: bytes | bytearray) -> int:
        self._budget.take(len(s))
        if not self.on_disk and self._size + len(s) > self._spill_at:
            disk = tempfile.TemporaryFile()  # noqa: SIM115 - owned by this writer, closed by release()
            assert isinstance(self._buf, io.BytesIO)
            disk.write(self._buf.getbuffer())
            self._buf, self.on_disk = disk, True
        self._buf.write(s)
        self._size += len(s)
        return len(s)

    def read(self, size: int | None = None) -> bytes:
        return self._buf.read(-1 if size is None else size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._buf.seek(offset, whence)

    def flush(self) -> None:
        self._buf.flush()

    def size(self) -> int:
        return self._size

    def source(self) -> Source:
        """The collected bytes as a random-access source."""
        if not self.on_disk:
            assert isinstance(self._buf, io.BytesIO)
            return BytesSource(self._buf.getbuffer())
        self._buf.flush()
        return _FdSource(self._buf.fileno(), self._size)

    def head(self, n: int) -> bytes:
        """The first ``n`` bytes (a symlink's target)."""
        self._buf.seek(0)
        return self._buf.read(n)

    def release(self) -> None:
        """Drop the collected bytes."""
        self._buf.close()


class _FdSource(Source):
    random_access = True

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self.size = size

    def open(self) -> IO[bytes]:
        return io.BufferedReader(RegionReader(os.dup(self._fd), 0, self._size, owns_fd=True), CHUNK)

    @property
    def _size(self) -> int:
        assert self.size is not None
        return self.size


class _Factory(py7zr.io.WriterFactory):
    def __init__(self, spill_at: int, declared: int) -> None:
        self.writers: dict[str, _SpoolWriter] = {}
        self._spill_at = spill_at
        self._budget = _Budget(declared)

    def create(self, filename: str) -> py7zr.io.Py7zIO:
        writer = _SpoolWriter(self._spill_at, self._budget)
        self.writers[filename] = writer
        return writer


def scan_seven_zip(source: Source, ctx: ScanContext) -> None:
    """Check the header, decompress within limits, scan each member by content."""
    with source.open() as stream:
        try:
            archive = py7zr.SevenZipFile(stream, mode="r")
        except py7zr.exceptions.PasswordRequired:
            ctx.report("MAM-ARC-006", "7z archive has an encrypted header", offset=0)
            return
        except _PARSE_ERRORS as exc:
            ctx.report("MAM-ARC-009", f"7z header cannot be parsed: {exc}", offset=0)
            return
        with archive:
            infos = archive.list()
            declared = _precheck(archive, infos, source, ctx)
            if declared is None:
                return
            factory = _Factory(ctx.limits.max_spool_memory, declared)
            try:
                archive.extractall(factory=factory)
            except LimitExceeded:
                raise
            except _PARSE_ERRORS as exc:
                ctx.report("MAM-ARC-009", f"7z data cannot be decoded: {exc}", offset=0)
    _scan_members(infos, factory, ctx)


def _precheck(
    archive: py7zr.SevenZipFile,
    infos: list[py7zr.FileInfo],
    source: Source,
    ctx: ScanContext,
) -> int | None:
    """The declared content size when it is within the limits, else ``None`` (reported)."""
    if archive.needs_password():
        ctx.report("MAM-ARC-006", "7z archive members are encrypted; not scanned", offset=0)
        return None
    total = 0
    for info in infos:
        check_member_name(info.filename, ctx, name_rule="MAM-ARC-011")
        total += info.uncompressed or 0
    limits = ctx.limits
    if total > limits.max_decompressed_bytes:
        ctx.report(
            "MAM-LIM-001",
            f"7z declares {total} bytes of content; not decompressed",
        )
        return None
    packed = max(source.size or 1, 1)
    if total > limits.ratio_floor and total > limits.max_compression_ratio * packed:
        ctx.report(
            "MAM-LIM-006",
            f"7z declares {total} bytes from {packed}; not decompressed",
        )
        return None
    ctx.account_decompressed(total)
    return total


def _scan_members(infos: list[py7zr.FileInfo], factory: _Factory, ctx: ScanContext) -> None:
    try:
        for info in infos:
            writer = factory.writers.get(info.filename)
            if info.is_directory:
                continue
            if writer is None:
                ctx.report(
                    "MAM-ARC-009",
                    "7z member was not decoded",
                    evidence=repr(info.filename),
                )
                continue
            if info.is_symlink:
                target = writer.head(_LINK_TARGET_MAX).decode("utf-8", "replace")
                escapes = link_target_escapes(info.filename, target)
                ctx.report(
                    "MAM-ARC-003" if escapes else "MAM-ARC-004",
                    f"symlink member points to {target!r}",
                    evidence=f"{info.filename!r} -> {target!r}",
                )
                continue
            scan_child_guarded(ctx, info.filename, writer.source(), expected_crc32=info.crc32)
    finally:
        for writer in factory.writers.values():
            writer.release()
