"""Tar archives (ustar, GNU, pax): unsafe members are reported, regular members scanned.

Header parsing and the per-member checks live in :mod:`mamori.scan._internal.tarread` so the
``.nemo`` and legacy torch tar handlers reuse them.
"""

from __future__ import annotations

from typing import ClassVar, Final

from mamori.findings import FileFormat
from mamori.scan._internal.source import Source
from mamori.scan._internal.tarread import MemberKind, iter_tar_members
from mamori.scan._internal.zipstream import scan_child_guarded
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext

__all__ = ["TarHandler", "looks_like_tar"]

_BLOCK: Final = 512
_MAGICS: Final = (b"ustar\x0000", b"ustar  \x00")
_CHKSUM: Final = slice(148, 156)


def looks_like_tar(head: bytes) -> bool:
    """A ustar/GNU magic at offset 257 and a header checksum that adds up.

    Pre-POSIX (v7) archives without the magic are not recognised; no model tooling writes
    them, and a checksum alone matches too much.
    """
    if len(head) < _BLOCK or head[257:265] not in _MAGICS:
        return False
    block = head[:_BLOCK]
    field = block[_CHKSUM].split(b"\0", 1)[0].strip()
    try:
        declared = int(field or b"x", 8)
    except ValueError:
        return False
    spaced = block[:148] + b" " * 8 + block[156:]
    unsigned = sum(spaced)
    signed = sum(b - 256 if b > 127 else b for b in spaced)  # noqa: PLR2004 - old tars sum signed bytes
    return declared in {unsigned, signed}


class TarHandler(FormatHandler):
    """Any tar archive: each regular member is scanned by content."""

    format: ClassVar[FileFormat] = FileFormat.TAR
    needs_random_access: ClassVar[bool] = True

    def sniff(self, probe: Probe) -> bool:
        """The ustar magic and a valid first header checksum."""
        return looks_like_tar(probe.head)

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Report unsafe members, then hand every regular member to the engine."""
        for member in iter_tar_members(source, ctx):
            if member.kind is MemberKind.FILE and member.source is not None:
                scan_child_guarded(ctx, member.name, member.source)
