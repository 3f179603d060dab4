"""7z archives: sniffed by signature; read through py7zr in ``_internal/sevenzip_read.py``.

Declared sizes are checked before anything is decompressed; members are decoded into memory
(spilling to an unlinked temporary file), never to paths named by the archive, then each is
scanned by content. Encrypted archives and members cannot be analysed and are findings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Final

from mamori.findings import FileFormat
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext

if TYPE_CHECKING:
    from mamori.scan._internal.source import Source

__all__ = ["SevenZipHandler"]

_MAGIC: Final = b"7z\xbc\xaf\x27\x1c"


class SevenZipHandler(FormatHandler):
    """7z archives: names, links, encryption and declared sizes first, then every member."""

    format: ClassVar[FileFormat] = FileFormat.SEVEN_ZIP
    needs_random_access: ClassVar[bool] = True

    def sniff(self, probe: Probe) -> bool:
        """The six-byte 7z signature."""
        return probe.head.startswith(_MAGIC)

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Check the header, decompress within limits, scan each member by content."""
        # Lazy: py7zr is imported only when a 7z archive is scanned (start-up time).
        from mamori.scan._internal.sevenzip_read import scan_seven_zip  # noqa: PLC0415

        scan_seven_zip(source, ctx)
