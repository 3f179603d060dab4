"""Generic zip archives: every member is scanned by its content.

Zip-based model formats (torch, TorchScript, npz, Keras v3) have their own handlers that
``refine`` this one; this module knows nothing about them. Detection accepts either a local
header at offset 0 or an end record at the very end of the file, so a pickle with a zip
appended (a polyglot that ``pickle.load`` and ``zipfile`` read differently) is detected as
both and the engine reports the ambiguity.
"""

from __future__ import annotations

import struct
from typing import ClassVar, Final

from mamori.findings import FileFormat
from mamori.scan._internal.source import Source
from mamori.scan._internal.zipformat import CENTRAL_SIG, EOCD_SIG, LOCAL_SIG
from mamori.scan._internal.zipread import read_zip
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext
from mamori.scan.formats.torch import scan_torch_zip, sniff_kind

__all__ = ["ZipHandler", "looks_like_zip"]

_EOCD_SIZE: Final = 22


def looks_like_zip(probe: Probe) -> bool:
    """True for a local header at offset 0, or an end record that closes the file.

    The tail test requires the end record's comment to end exactly at the end of the file and
    the central directory (when it lies in the tail) to start with its signature, so a tar or
    a pickle that merely contains a zip somewhere does not count.
    """
    head = probe.head
    if head.startswith(LOCAL_SIG) or (head.startswith(EOCD_SIG) and len(head) == _EOCD_SIZE):
        return True
    tail = probe.tail
    if tail is None or len(tail) < _EOCD_SIZE:
        return False
    pos = tail.rfind(EOCD_SIG, 0, len(tail) - _EOCD_SIZE + len(EOCD_SIG))
    while pos >= 0:
        n_total, cd_size = struct.unpack_from("<HL", tail, pos + 10)
        (comment_len,) = struct.unpack_from("<H", tail, pos + 20)
        if pos + _EOCD_SIZE + comment_len == len(tail):
            cd_start = pos - cd_size
            if n_total == 0 or cd_start < 0 or tail[cd_start : cd_start + 4] == CENTRAL_SIG:
                return True
        pos = tail.rfind(EOCD_SIG, 0, pos)
    return False


class ZipHandler(FormatHandler):
    """Any zip archive: differentials are reported, then each member is scanned by content."""

    format: ClassVar[FileFormat] = FileFormat.ZIP
    needs_random_access: ClassVar[bool] = True

    def sniff(self, probe: Probe) -> bool:
        """A local header at offset 0 or an end record at the end of the bytes."""
        return looks_like_zip(probe)

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Parse the directory strictly, then hand every member to the engine.

        The torch handlers decide from the probe, which may hold only part of the member list.
        An archive that torch would open (a local header at offset 0, torch's ``_is_zipfile``)
        and whose full list has the torch layout is read as torch reads it instead.
        """
        directory = read_zip(source, ctx)
        with source.open() as stream:
            starts_local = stream.read(len(LOCAL_SIG)) == LOCAL_SIG
        if starts_local and sniff_kind([e.name for e in directory.entries]) is not None:
            scan_torch_zip(directory, ctx)
            return
        directory.scan_members(ctx)
