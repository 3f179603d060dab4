"""A strict zip reader that reports every ambiguity instead of picking one reading.

``zipfile``, miniz (inside PyTorch), libzip and 7-Zip disagree on archives that are slightly
wrong: which end record wins, whether the local or the central header is trusted, whether
offsets are shifted for prepended data, what a duplicate name means. An attacker who knows
that can show the scanner one archive and the loader another (see "Zip parser differentials",
https://www.usenix.org/conference/usenixsecurity25/presentation/you and the pickle+zip
polyglots in https://github.com/mmaitre314/picklescan/security/advisories). This reader parses
the structures itself, follows ``zipfile``'s choices where it must choose (numpy and Keras load
through ``zipfile``), and reports each point where another reader could diverge.

Member data is never read here except to decompress it for the engine: stored members are
handed out as regions of the parent so the engine hashes them with ``pread`` and no copy.
"""

from __future__ import annotations

import stat
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from mamori.errors import ScanError
from mamori.findings import FileFormat, Location
from mamori.scan._internal.archive_names import check_member_name, normalise_member_name
from mamori.scan._internal.context import ScanContext
from mamori.scan._internal.source import Source, StreamSource
from mamori.scan._internal.zipend import CappedReporter, EndFinder
from mamori.scan._internal.zipformat import (
    CENTRAL,
    CENTRAL_SIG,
    DESCRIPTOR_SIG,
    FLAG_DESCRIPTOR,
    FLAG_UTF8,
    LOCAL,
    LOCAL_SIG,
    U32,
    PositionalReader,
    region_of,
    unicode_path_extra,
    zip64_extra,
    zip_names_from_probe,
)
from mamori.scan._internal.zipstream import (
    SUPPORTED_METHODS,
    Method,
    open_decompressed,
    scan_child_guarded,
)
from mamori.scan.rules import rule

__all__ = [
    "Method",
    "ZipDirectory",
    "ZipEntry",
    "ZipMemberError",
    "read_zip",
    "region_of",
    "zip_names_from_probe",
]

_FLAG_ENCRYPTED: Final = 0x0001
_FLAG_STRONG_ENCRYPTION: Final = 0x0040
# Flags whose disagreement between the local and central header changes how a reader decodes
# the member. Other bits (compression level hints) legitimately differ between writers.
_SIGNIFICANT_FLAGS: Final = _FLAG_ENCRYPTED | FLAG_DESCRIPTOR | _FLAG_STRONG_ENCRYPTION | FLAG_UTF8
_UNIX: Final = 3
_CRC_LEN: Final = 4


class ZipMemberError(ScanError):
    """A member cannot be read (encrypted, unsupported method); a finding was already emitted."""


@dataclass(frozen=True, slots=True)
class ZipEntry:
    """One member as the central directory and its local header describe it.

    Offsets are absolute within the parsed source (already shifted for prepended data, as
    ``zipfile`` does). ``crc32``, sizes and ``method`` come from the central directory.
    """

    name: str
    method: int
    flags: int
    crc32: int
    compressed_size: int
    size: int
    local_header_offset: int
    data_offset: int
    is_dir: bool
    is_symlink: bool
    encrypted: bool


class ZipDirectory:
    """The parsed member list of one zip archive, and access to each member's bytes."""

    def __init__(self, source: Source, entries: tuple[ZipEntry, ...]) -> None:
        self.source = source
        self.entries = entries
        # Readers disagree on a duplicated name (zipfile reads the last entry, miniz and
        # libzip the first), so every copy is scanned, each under its own label.
        self._labels: dict[int, str] = {}
        seen: dict[str, int] = {}
        for entry in entries:
            copy = seen[entry.name] = seen.get(entry.name, 0) + 1
            if copy > 1:
                self._labels[id(entry)] = (
                    f"{entry.name} [copy {copy} at offset {entry.local_header_offset}]"
                )

    def names(self) -> list[str]:
        """Member names in central-directory order (duplicates kept)."""
        return [e.name for e in self.entries]

    def label(self, entry: ZipEntry) -> str:
        """The member name to report ``entry`` under.

        The name itself for the first entry of a name; for a later entry with the same name
        (MAM-ZIP-003) the name with its copy number and local-header offset, so findings and
        member digests of the copies stay apart.
        """
        return self._labels.get(id(entry), entry.name)

    def is_duplicate(self, entry: ZipEntry) -> bool:
        """Whether an earlier entry of the central directory has the same name."""
        return id(entry) in self._labels

    def readable(self, entry: ZipEntry) -> bool:
        """Whether :meth:`member_source` can produce the entry's content."""
        return not entry.encrypted and entry.method in SUPPORTED_METHODS

    def member_source(self, entry: ZipEntry, ctx: ScanContext) -> Source:
        """The member's content: a region of the parent when stored, else a bounded stream.

        Decompressed streams count their output against the scan's decompression budget and
        ratio limit and raise :class:`LimitExceeded` (a finding) on a bomb, corrupt data or a
        length that differs from the declared size.

        Raises:
            ZipMemberError: the member is encrypted or uses an unsupported method.
        """
        if not self.readable(entry):
            msg = f"zip member {entry.name!r} is encrypted or uses method {entry.method}"
            raise ZipMemberError(msg)
        raw = region_of(self.source, entry.data_offset, entry.compressed_size)
        if entry.method == Method.STORED:
            return raw
        return StreamSource(
            lambda: open_decompressed(
                raw,
                Method(entry.method),
                compressed_size=entry.compressed_size,
                declared_size=entry.size,
                ctx=ctx,
            ),
            size=None,
        )

    def scan_members(
        self,
        ctx: ScanContext,
        *,
        opaque: Callable[[ZipEntry], bool] = lambda _e: False,
        expected_format: Callable[[ZipEntry], FileFormat | None] = lambda _e: None,
    ) -> None:
        """Scan every member by content through ``ctx.scan_child``, with CRC and bomb checks.

        Directories without data, links, encrypted members and unsupported methods are skipped
        (``read_zip`` already reported the last three). A bomb or corrupt member is reported
        against that member and the remaining members are still scanned.
        """
        limits = ctx.limits
        for entry in self.entries:
            ctx.check_deadline()
            if entry.is_dir and entry.compressed_size == 0 and entry.size == 0:
                continue
            if entry.is_symlink or not self.readable(entry):
                continue
            if entry.method != Method.STORED:
                expands = entry.size > limits.ratio_floor and entry.size > (
                    limits.max_compression_ratio * max(entry.compressed_size, 1)
                )
                if expands:
                    _member_finding(
                        ctx,
                        self.label(entry),
                        "MAM-LIM-006",
                        f"declared expansion {entry.compressed_size} -> {entry.size} bytes "
                        f"exceeds ratio {limits.max_compression_ratio}; not decompressed",
                    )
                    continue
                if entry.size > limits.max_decompressed_bytes:
                    _member_finding(
                        ctx,
                        self.label(entry),
                        "MAM-LIM-001",
                        f"declared size {entry.size} exceeds the decompression limit; "
                        "not decompressed",
                    )
                    continue
            scan_child_guarded(
                ctx,
                self.label(entry),
                self.member_source(entry, ctx),
                opaque=opaque(entry),
                expected_crc32=entry.crc32,
                expected_format=expected_format(entry),
            )


def _member_finding(ctx: ScanContext, name: str, rule_id: str, message: str) -> None:
    # Same location and message as the engine uses when the member's own handler hit the
    # limit first, so the two emissions collapse into one finding.
    ctx.emit(rule(rule_id).finding(message, location=Location((*ctx.member_path, name))))


def read_zip(source: Source, ctx: ScanContext) -> ZipDirectory:
    """Parse the zip archive in ``source``, reporting every structural ambiguity via ``ctx``.

    Never raises for malformed input: an archive that cannot be parsed yields a ``MAM-ZIP-001``
    finding and whatever entries could be read (possibly none). Entries whose local header is
    missing are reported and left out, because no reader can extract them.

    Raises:
        ValueError: ``source`` is not random-access (handlers set ``needs_random_access``).
    """
    reader = PositionalReader(source)
    try:
        entries = _Parser(reader, ctx).parse()
    finally:
        reader.close()
    return ZipDirectory(source, entries)


class _Parser:
    def __init__(self, reader: PositionalReader, ctx: ScanContext) -> None:
        self.r = reader
        self.ctx = ctx
        self.report = CappedReporter(ctx)

    def parse(self) -> tuple[ZipEntry, ...]:
        end = EndFinder(self.r, self.report).find()
        if end is None:
            return ()
        cd_start = end.position - end.cd_size
        concat = cd_start - end.cd_offset
        if cd_start < 0 or concat < 0:
            self.report(
                "MAM-ZIP-001",
                "central directory size and offset point before the start of the file",
                evidence=f"offset {end.cd_offset}, size {end.cd_size}",
            )
            return ()
        if concat:
            # zipfile shifts every offset by this amount; miniz (torch.load) does not, so the
            # two see different archives (or torch fails to open it).
            self.report(
                "MAM-ZIP-005",
                f"{concat} bytes precede the archive and its offsets are not adjusted for them",
                offset=0,
            )
        if end.cd_size > self.ctx.limits.max_header_bytes:
            self.report(
                "MAM-ZIP-001",
                f"central directory of {end.cd_size} bytes exceeds max_header_bytes; not parsed",
            )
            return ()
        cd = self.r.read_at(cd_start, end.cd_size)
        central = list(self._central_entries(cd, cd_start, end.entries))
        entries = self._locals(central, concat, cd_start)
        self._check_layout(entries, cd_start)
        self._check_duplicates(entries)
        return tuple(entries)

    # -- central directory --------------------------------------------------------------------

    def _central_entries(
        self, cd: bytes, cd_start: int, declared: int
    ) -> Iterator[tuple[ZipEntry, bytes, int]]:
        """Yield ``(entry without local info, raw name, offset of the central entry)``."""
        pos = 0
        count = 0
        max_members = self.ctx.limits.max_members
        while pos + CENTRAL.size <= len(cd) and cd[pos : pos + 4] == CENTRAL_SIG:
            if count >= max_members:
                self.report(
                    "MAM-LIM-003",
                    f"central directory lists more than {max_members} entries; rest ignored",
                )
                return
            fields = CENTRAL.unpack_from(cd, pos)
            name_len, extra_len, comment_len = fields[12], fields[13], fields[14]
            body = pos + CENTRAL.size
            if body + name_len + extra_len + comment_len > len(cd):
                self.report(
                    "MAM-ZIP-001", "central directory entry is truncated", offset=cd_start + pos
                )
                return
            raw_name = cd[body : body + name_len]
            extra = cd[body + name_len : body + name_len + extra_len]
            entry = self._central_entry(fields, raw_name, extra, cd_start + pos)
            if entry is not None:
                yield entry, raw_name, cd_start + pos
            count += 1
            pos = body + name_len + extra_len + comment_len
        if count != declared and count < max_members:
            self.report(
                "MAM-ZIP-013",
                f"end record announces {declared} entries, central directory holds {count}",
            )
        if pos != len(cd) and count < max_members:
            self.report(
                "MAM-ZIP-013",
                f"{len(cd) - pos} unparsed bytes in the central directory",
                offset=cd_start + pos,
            )

    def _central_entry(
        self, fields: tuple[int, ...], raw_name: bytes, extra: bytes, where: int
    ) -> ZipEntry | None:
        (_, _, create_system, _, _, flags, method, _, _, crc, csize, usize, *_rest) = fields
        external, local_offset = fields[17], fields[18]
        name = self._decode_name(raw_name, flags, where)
        z64 = zip64_extra(extra)
        wide: list[int] = []
        if z64 is None:
            self.report("MAM-ZIP-009", "corrupt extra field", offset=where, evidence=repr(name))
            return None
        values = iter(z64)
        try:
            if usize == U32:
                usize = next(values)
            if csize == U32:
                csize = next(values)
            if local_offset == U32:
                local_offset = next(values)
        except StopIteration:
            self.report(
                "MAM-ZIP-009",
                "saturated size or offset without the ZIP64 value",
                offset=where,
                evidence=repr(name),
            )
            return None
        wide.extend(values)
        unicode_name = unicode_path_extra(extra)
        if unicode_name is not None and unicode_name != name:
            self.report(
                "MAM-ZIP-002",
                "Info-ZIP unicode path field names a different file than the header",
                offset=where,
                evidence=f"{name!r} vs {unicode_name!r}",
            )
        check_member_name(name, self.ctx, offset=where)
        is_symlink = self._check_kind(name, create_system, external, where)
        encrypted = bool(flags & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION))
        if encrypted:
            self.report("MAM-ARC-006", "member is encrypted", offset=where, evidence=name)
        elif method not in SUPPORTED_METHODS:
            self.report(
                "MAM-ARC-007",
                f"compression method {method} is not supported; member not scanned",
                offset=where,
                evidence=name,
            )
        if method == Method.STORED and csize != usize and not encrypted:
            self.report(
                "MAM-ZIP-011",
                f"stored member declares {csize} stored but {usize} extracted bytes",
                offset=where,
                evidence=name,
            )
        return ZipEntry(
            name=name,
            method=method,
            flags=flags,
            crc32=crc,
            compressed_size=csize,
            size=usize,
            local_header_offset=local_offset,
            data_offset=-1,
            is_dir=name.endswith("/"),
            is_symlink=is_symlink,
            encrypted=encrypted,
        )

    def _check_kind(self, name: str, create_system: int, external: int, where: int) -> bool:
        """Report links and special files (unix mode in the external attributes)."""
        mode = external >> 16
        if create_system != _UNIX or mode == 0:
            return False
        if stat.S_ISLNK(mode):
            self.report("MAM-ARC-004", "member is a symbolic link", offset=where, evidence=name)
            return True
        # Writers that set permission bits only (zipfile.writestr) leave the type bits zero.
        if stat.S_IFMT(mode) not in {0, stat.S_IFREG, stat.S_IFDIR}:
            self.report(
                "MAM-ARC-005",
                "member is a device, FIFO or socket",
                offset=where,
                evidence=f"{name!r} mode {mode:o}",
            )
        return False

    def _decode_name(self, raw: bytes, flags: int, where: int) -> str:
        if flags & FLAG_UTF8:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                self.report(
                    "MAM-ZIP-010",
                    "member name flagged UTF-8 is not valid UTF-8",
                    offset=where,
                    evidence=repr(raw),
                )
                return raw.decode("utf-8", "replace")
        # zipfile's fallback; other tools use the OEM code page of the system they run on.
        return raw.decode("cp437")

    # -- local headers ------------------------------------------------------------------------

    def _locals(
        self, central: list[tuple[ZipEntry, bytes, int]], concat: int, cd_start: int
    ) -> list[ZipEntry]:
        out: list[ZipEntry] = []
        for entry, raw_name, where in central:
            self.ctx.check_deadline()
            checked = self._local(entry, raw_name, where, concat, cd_start)
            if checked is not None:
                out.append(checked)
        return out

    def _local(
        self, entry: ZipEntry, raw_name: bytes, where: int, concat: int, cd_start: int
    ) -> ZipEntry | None:
        off = entry.local_header_offset + concat
        head = self.r.read_at(off, LOCAL.size)
        if len(head) != LOCAL.size or head[:4] != LOCAL_SIG:
            self.report(
                "MAM-ZIP-002",
                "central directory entry points at no local file header; member unreadable",
                offset=where,
                evidence=repr(entry.name),
            )
            return None
        fields = LOCAL.unpack(head)
        flags, name_len, extra_len = fields[3], fields[10], fields[11]
        var = self.r.read_at(off + LOCAL.size, name_len + extra_len)
        diffs = _header_diffs(entry, raw_name, fields, var)
        deferred = bool(flags & FLAG_DESCRIPTOR)
        if diffs:
            self.report(
                "MAM-ZIP-002",
                "local header disagrees with the central directory: " + ", ".join(diffs),
                offset=off,
                evidence=repr(entry.name),
            )
        data_offset = off + LOCAL.size + name_len + extra_len
        data_end = data_offset + entry.compressed_size
        if data_end > self.r.size:
            self.report(
                "MAM-ZIP-001",
                "member data runs past the end of the file; member unreadable",
                offset=data_offset,
                evidence=repr(entry.name),
            )
            return None
        if deferred:
            self._check_descriptor(entry, data_end, cd_start)
        return ZipEntry(
            name=entry.name,
            method=entry.method,
            flags=entry.flags,
            crc32=entry.crc32,
            compressed_size=entry.compressed_size,
            size=entry.size,
            local_header_offset=off,
            data_offset=data_offset,
            is_dir=entry.is_dir,
            is_symlink=entry.is_symlink,
            encrypted=entry.encrypted,
        )

    def _check_descriptor(self, entry: ZipEntry, data_end: int, cd_start: int) -> None:
        raw = self.r.read_at(data_end, min(16, max(0, cd_start - data_end)))
        if raw[:4] == DESCRIPTOR_SIG:
            raw = raw[4:]
        if len(raw) >= _CRC_LEN and struct.unpack_from("<L", raw)[0] != entry.crc32:
            self.report(
                "MAM-ZIP-002",
                "data descriptor CRC disagrees with the central directory",
                offset=data_end,
                evidence=repr(entry.name),
            )

    # -- whole-archive checks -----------------------------------------------------------------

    def _check_layout(self, entries: list[ZipEntry], cd_start: int) -> None:
        spans = sorted(
            (e.local_header_offset, e.data_offset + e.compressed_size, e.name) for e in entries
        )
        first = spans[0][0] if spans else cd_start
        if first > 0:
            self.report(
                "MAM-ZIP-005",
                f"{first} bytes precede the first local file header",
                offset=0,
                evidence=repr(self.r.read_at(0, 16)),
            )
        prev_end, prev_name = -1, ""
        for start, end, name in spans:
            if start < prev_end:
                self.report(
                    "MAM-ZIP-004",
                    "member shares bytes with another member",
                    offset=start,
                    evidence=f"{prev_name!r} and {name!r}",
                )
            if end > prev_end:
                prev_end, prev_name = end, name
        if prev_end > cd_start:
            self.report(
                "MAM-ZIP-004",
                "member data overlaps the central directory",
                offset=cd_start,
                evidence=repr(prev_name),
            )

    def _check_duplicates(self, entries: list[ZipEntry]) -> None:
        exact: set[str] = set()
        normal: dict[str, str] = {}
        for e in entries:
            if e.name in exact:
                self.report("MAM-ZIP-003", "duplicate member name", evidence=repr(e.name))
                continue
            exact.add(e.name)
            key = normalise_member_name(e.name)
            if key in normal:
                self.report(
                    "MAM-ZIP-003",
                    "member names collide after case folding or path normalisation",
                    evidence=f"{normal[key]!r} and {e.name!r}",
                )
            else:
                normal[key] = e.name


def _header_diffs(
    entry: ZipEntry, raw_name: bytes, fields: tuple[int, ...], var: bytes
) -> list[str]:
    """What a local header (``fields``, then name and extra in ``var``) says differently."""
    _, _, _, flags, method, _, _, crc, csize, usize, name_len, _ = fields
    local_name, extra = var[:name_len], var[name_len:]
    diffs: list[str] = []
    if local_name != raw_name:
        diffs.append(f"name {local_name!r}")
    if method != entry.method:
        diffs.append(f"method {method}")
    if (flags ^ entry.flags) & _SIGNIFICANT_FLAGS:
        diffs.append(f"flags {flags:#06x}")
    z64 = zip64_extra(extra) or []
    if usize == U32 and z64:
        usize = z64[0]
    if csize == U32 and len(z64) > 1:
        csize = z64[1]
    # With a data descriptor the local values may legitimately be zero.
    deferred = bool(flags & FLAG_DESCRIPTOR)
    for label, local, central in (
        ("crc", crc, entry.crc32),
        ("compressed size", csize, entry.compressed_size),
        ("size", usize, entry.size),
    ):
        if local != central and not (deferred and local == 0):
            diffs.append(f"{label} {local}")
    return diffs
