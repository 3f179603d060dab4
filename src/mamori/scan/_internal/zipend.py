"""Finding the end of a zip archive, and every way the end records can disagree.

``zipfile`` takes the last end-record signature in the final 64 KiB (``rfind``); miniz and
libzip search differently, and ZIP64 locators carry an offset that ``zipfile`` ignores. The
end record decides which archive a reader opens, so each disagreement is reported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mamori.scan._internal.context import ScanContext
from mamori.scan._internal.zipformat import (
    CENTRAL_SIG,
    EOCD,
    EOCD_SIG,
    LOCAL_SIG,
    MAX_COMMENT,
    U16,
    U32,
    Z64_EOCD,
    Z64_EOCD_SIG,
    Z64_LOCATOR,
    Z64_LOCATOR_SIG,
    PositionalReader,
    find_all,
)

__all__ = ["CappedReporter", "EndFinder", "EndRecord"]

# Magic bytes that, found inside an archive comment, mean a second payload is hiding there.
_HIDDEN_MAGIC: Final = (
    (LOCAL_SIG, "zip local header"),
    (CENTRAL_SIG, "zip central directory"),
    (EOCD_SIG, "zip end record"),
    (b"\x1f\x8b", "gzip"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"\x80\x02", "pickle protocol 2"),
    (b"\x80\x03", "pickle protocol 3"),
    (b"\x80\x04\x95", "pickle protocol 4"),
    (b"\x80\x05\x95", "pickle protocol 5"),
)
_MAX_REPORTS_PER_RULE: Final = 20


class CappedReporter:
    """Emits findings through the context, at most a few per rule.

    A hostile archive with a million bad entries must not flood the report.
    """

    def __init__(self, ctx: ScanContext) -> None:
        self.ctx = ctx
        self._counts: dict[str, int] = {}

    def __call__(
        self, rule_id: str, message: str, *, offset: int | None = None, evidence: str | None = None
    ) -> None:
        n = self._counts.get(rule_id, 0) + 1
        self._counts[rule_id] = n
        if n <= _MAX_REPORTS_PER_RULE:
            self.ctx.report(rule_id, message, offset=offset, evidence=evidence)
        elif n == _MAX_REPORTS_PER_RULE + 1:
            self.ctx.report(rule_id, "further findings of this rule in this archive omitted")


@dataclass(frozen=True, slots=True)
class EndRecord:
    position: int
    """Where the central directory ends: the ZIP64 end record if present, else the EOCD."""
    entries: int
    cd_size: int
    cd_offset: int


class EndFinder:
    """Locates the end record (and ZIP64 records) the way ``zipfile`` does, reporting others."""

    def __init__(self, reader: PositionalReader, report: CappedReporter) -> None:
        self.r = reader
        self.report = report

    def find(self) -> EndRecord | None:
        """The end record a ``zipfile`` reader uses, or ``None`` when there is none."""
        size = self.r.size
        if size < EOCD.size:
            self.report("MAM-ZIP-001", "too small to be a zip archive")
            return None
        start = max(0, size - MAX_COMMENT - EOCD.size)
        tail = self.r.read_at(start, size - start)
        candidates = [p for p in find_all(tail, EOCD_SIG) if p + EOCD.size <= len(tail)]
        if not candidates:
            self.report("MAM-ZIP-001", "no end of central directory record")
            return None
        # zipfile takes the last signature in the tail (rfind); so do we, and report others
        # that look like real end records.
        pos = candidates[-1]
        others = [p for p in candidates[:-1] if self._plausible_eocd(tail, p, start)]
        if others:
            self.report(
                "MAM-ZIP-007",
                f"{len(others) + 1} end of central directory records; the last one is used",
                offset=start + others[0],
            )
        _, disk, disk_cd, n_disk, n_total, cd_size, cd_offset, comment_len = EOCD.unpack_from(
            tail, pos
        )
        eocd_pos = start + pos
        comment_end = eocd_pos + EOCD.size + comment_len
        if comment_end > size:
            self.report(
                "MAM-ZIP-001",
                "archive comment runs past the end of the file",
                offset=eocd_pos,
            )
        elif comment_end < size:
            self.report(
                "MAM-ZIP-006",
                f"{size - comment_end} bytes follow the end of central directory record",
                offset=comment_end,
            )
        comment = tail[pos + EOCD.size : pos + EOCD.size + comment_len]
        for magic, what in _HIDDEN_MAGIC:
            if magic in comment:
                self.report(
                    "MAM-ZIP-008",
                    f"archive comment contains a {what} signature",
                    offset=eocd_pos + EOCD.size + comment.index(magic),
                )
                break
        if disk != 0 or disk_cd != 0 or n_disk != n_total:
            self.report(
                "MAM-ZIP-001",
                "multi-disk archive fields are set; readers disagree on spanned archives",
                offset=eocd_pos,
            )
        end = EndRecord(eocd_pos, n_total, cd_size, cd_offset)
        return self._zip64(end)

    def _plausible_eocd(self, tail: bytes, pos: int, start: int) -> bool:
        n_total, cd_size, _, comment_len = EOCD.unpack_from(tail, pos)[4:]
        abs_pos = start + pos
        if abs_pos + EOCD.size + comment_len > self.r.size or cd_size > abs_pos:
            return False
        if n_total == 0:
            return bool(cd_size == 0)
        return self.r.read_at(abs_pos - cd_size, 4) == CENTRAL_SIG

    def _zip64(self, end: EndRecord) -> EndRecord:
        loc_pos = end.position - Z64_LOCATOR.size
        loc = self.r.read_at(loc_pos, Z64_LOCATOR.size)
        saturated = end.entries == U16 or U32 in {end.cd_size, end.cd_offset}
        if len(loc) != Z64_LOCATOR.size or loc[:4] != Z64_LOCATOR_SIG:
            if saturated:
                self.report(
                    "MAM-ZIP-009",
                    "end record fields are saturated but there is no ZIP64 locator",
                    offset=end.position,
                )
            return end
        _, disk, declared_pos, disks = Z64_LOCATOR.unpack(loc)
        # zipfile assumes the ZIP64 end record sits right before the locator and ignores the
        # locator's offset; other readers follow the offset. Report when the two differ.
        rec_pos = loc_pos - Z64_EOCD.size
        rec = self.r.read_at(rec_pos, Z64_EOCD.size)
        if len(rec) != Z64_EOCD.size or rec[:4] != Z64_EOCD_SIG:
            self.report(
                "MAM-ZIP-009",
                "ZIP64 locator present but no ZIP64 end record before it",
                offset=loc_pos,
            )
            return end
        if disk != 0 or disks > 1:
            self.report("MAM-ZIP-009", "ZIP64 locator declares several disks", offset=loc_pos)
        # A locator offset smaller than the record's position is what prepended data does
        # (reported later as MAM-ZIP-005); a larger one, or one naming a different record,
        # is a genuine disagreement.
        elsewhere = self.r.read_at(declared_pos, 4) == Z64_EOCD_SIG
        if declared_pos > rec_pos or (declared_pos != rec_pos and elsewhere):
            self.report(
                "MAM-ZIP-009",
                "ZIP64 locator points elsewhere than the ZIP64 end record",
                offset=loc_pos,
                evidence=f"locator says {declared_pos}, record at {rec_pos}",
            )
        _, _, _, _, _, _, _n_disk, n_total, cd_size, cd_offset = Z64_EOCD.unpack(rec)
        pairs = (
            ("entry count", end.entries, n_total, U16),
            ("directory size", end.cd_size, cd_size, U32),
            ("directory offset", end.cd_offset, cd_offset, U32),
        )
        for label, classic, wide, cap in pairs:
            if classic not in {cap, wide}:
                self.report(
                    "MAM-ZIP-009",
                    f"ZIP64 {label} {wide} contradicts the classic end record's {classic}",
                    offset=rec_pos,
                )
        return EndRecord(rec_pos, n_total, cd_size, cd_offset)
