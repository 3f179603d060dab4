"""7z archives: declared sizes checked before decoding, members scanned, encryption reported."""

from __future__ import annotations

import hashlib
import struct
import zlib

import py7zr

from mamori.findings import FileFormat, ScanReport
from mamori.scan import scan_bytes, scan_path
from mamori.scan.limits import ScanLimits
from mamori.scan.policy import ScanPolicy


def rules(report: ScanReport) -> set[str]:
    return {f.rule_id for f in report.findings}


def make_7z(path, members: dict[str, bytes], password: str | None = None):
    with py7zr.SevenZipFile(path, "w", password=password) as archive:
        for name, data in members.items():
            archive.writestr(data, name)
    return path


def test_members_are_decoded_and_hashed(tmp_path):
    path = make_7z(tmp_path / "a.7z", {"w.bin": b"weights" * 100, "c.txt": b"cfg"})
    report = scan_path(path)
    assert report.format is FileFormat.SEVEN_ZIP
    digests = {m.path: m.sha256 for m in report.members}
    assert digests[("w.bin",)] == hashlib.sha256(b"weights" * 100).hexdigest()
    assert not {r for r in rules(report) if r.startswith("MAM-ARC")}


def test_an_encrypted_archive_is_reported_and_not_scanned(tmp_path):
    path = make_7z(tmp_path / "a.7z", {"w.bin": b"secret"}, password="pw")
    report = scan_path(path)
    assert "MAM-ARC-006" in rules(report)
    assert report.members == ()


def test_a_traversal_member_name_is_reported(tmp_path):
    # py7zr refuses to write "../", so write "AA/evil.py" with a plain header and patch it.
    path = tmp_path / "a.7z"
    with py7zr.SevenZipFile(path, "w") as archive:
        archive.set_encoded_header_mode(False)
        archive.writestr(b"x", "AA/evil.py")
    data = bytearray(path.read_bytes())
    at = data.index("AA/".encode("utf-16-le"))
    data[at : at + 4] = "..".encode("utf-16-le")
    offset, size = struct.unpack_from("<QQ", data, 12)
    header = data[32 + offset : 32 + offset + size]
    struct.pack_into("<L", data, 28, zlib.crc32(header))
    struct.pack_into("<L", data, 8, zlib.crc32(data[12:32]))
    assert "MAM-ARC-001" in rules(scan_bytes(bytes(data), "a.7z"))


def test_declared_sizes_over_the_budget_are_refused_before_decoding(tmp_path):
    path = make_7z(tmp_path / "a.7z", {"zeros": b"\0" * 5000})
    policy = ScanPolicy(limits=ScanLimits(max_decompressed_bytes=1000))
    report = scan_path(path, policy)
    assert "MAM-LIM-001" in rules(report)
    assert report.members == ()


def test_a_corrupt_archive_is_reported(tmp_path):
    data = make_7z(tmp_path / "a.7z", {"w.bin": b"weights" * 100}).read_bytes()
    assert "MAM-ARC-009" in rules(scan_bytes(data[:40], "a.7z"))


def test_members_that_decode_past_the_declared_size_are_stopped(tmp_path, monkeypatch):
    # A header whose sizes understate what its coders produce is simulated by shrinking the
    # declared total the size check returns; the real decoder then runs past it.
    from mamori.scan._internal import sevenzip_read

    checked = sevenzip_read._precheck
    monkeypatch.setattr(sevenzip_read, "_precheck", lambda *a: None if checked(*a) is None else 10)
    path = make_7z(tmp_path / "a.7z", {"w.bin": b"weights" * 100})
    report = scan_path(path)
    assert "MAM-LIM-001" in rules(report)
    assert report.verdict.value == "unsafe"
