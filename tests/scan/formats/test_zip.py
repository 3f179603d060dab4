"""The generic zip handler: detection by content, members scanned by content, nesting."""

from __future__ import annotations

import hashlib
import io
import zipfile

from mamori.findings import FileFormat
from mamori.scan import scan_bytes, scan_path
from mamori.scan.formats.interface import Probe
from mamori.scan.formats.zip import ZipHandler


def make_zip(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def probe(data: bytes) -> Probe:
    return Probe(head=data[:65536], tail=data[-65536:], size=len(data), name="x")


def test_a_local_header_at_offset_zero_is_sniffed_as_zip():
    assert ZipHandler().sniff(probe(make_zip({"a": b"b"})))


def test_an_end_record_closing_the_file_is_sniffed_as_zip_even_after_a_prefix():
    assert ZipHandler().sniff(probe(b"prefix bytes" + make_zip({"a": b"b"})))


def test_an_empty_archive_is_sniffed_as_zip():
    assert ZipHandler().sniff(probe(make_zip({})))


def test_text_that_mentions_a_zip_signature_is_not_zip():
    assert not ZipHandler().sniff(probe(b"hello PK\x05\x06 world" + b" " * 40))


def test_a_tar_holding_a_zip_is_not_sniffed_as_zip_because_padding_follows():
    assert not ZipHandler().sniff(probe(b"x" * 512 + make_zip({"a": b"b"}) + b"\0" * 1024))


def test_a_zip_file_on_disk_hashes_stored_members_exactly(tmp_path):
    payload = bytes(range(256)) * 100
    path = tmp_path / "a.zip"
    path.write_bytes(make_zip({"w.bin": payload}))
    report = scan_path(path)
    assert report.format is FileFormat.ZIP
    (member,) = report.members
    assert member.sha256 == hashlib.sha256(payload).hexdigest()
    assert member.size == len(payload)


def test_a_zip_inside_a_zip_is_scanned_recursively():
    inner = make_zip({"deep.bin": b"x" * 10}, zipfile.ZIP_DEFLATED)
    report = scan_bytes(make_zip({"inner.zip": inner}, zipfile.ZIP_DEFLATED), "a.zip")
    assert ("inner.zip", "deep.bin") in [m.path for m in report.members]
    assert {m.path: m.format for m in report.members}[("inner.zip",)] is FileFormat.ZIP


def test_an_empty_archive_has_no_findings():
    assert scan_bytes(make_zip({}), "a.zip").findings == ()
