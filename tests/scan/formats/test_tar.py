"""Tar archives: unsafe members reported, regular members scanned, hostile headers contained."""

from __future__ import annotations

import hashlib
import io
import tarfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamori.findings import FileFormat, ScanReport
from mamori.scan import scan_bytes, scan_path
from mamori.scan._internal.source import BytesSource
from mamori.scan._internal.tarread import MemberKind, iter_tar_members
from mamori.scan.formats.tar import looks_like_tar
from mamori.scan.policy import ScanPolicy


def make_tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def rules(report: ScanReport) -> set[str]:
    return {f.rule_id for f in report.findings}


def test_a_clean_tar_lists_and_hashes_every_regular_member(tmp_path):
    path = tmp_path / "a.tar"
    path.write_bytes(make_tar((entry("a/b.bin"), b"hello"), (entry("a", tarfile.DIRTYPE), b"")))
    report = scan_path(path)
    assert report.format is FileFormat.TAR
    assert [(m.path, m.sha256) for m in report.members] == [
        (("a/b.bin",), hashlib.sha256(b"hello").hexdigest())
    ]
    assert not {r for r in rules(report) if r.startswith("MAM-ARC")}


def test_gnu_and_ustar_headers_are_both_sniffed():
    for fmt in (tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
            tf.addfile(tarfile.TarInfo("x"), io.BytesIO(b""))
        assert looks_like_tar(buf.getvalue())


def test_text_is_not_sniffed_as_tar():
    assert not looks_like_tar(b"hello" * 200)


def test_cve_2007_4559_traversal_member_is_reported():
    assert "MAM-ARC-001" in rules(scan_bytes(make_tar((entry("../../evil.py"), b"x")), "a.tar"))


def test_an_absolute_member_path_is_reported():
    assert "MAM-ARC-002" in rules(scan_bytes(make_tar((entry("/etc/cron.d/x"), b"x")), "a.tar"))


def test_a_symlink_out_of_the_tree_is_an_escape():
    data = make_tar((entry("dir/link", tarfile.SYMTYPE, "../../etc/passwd"), b""))
    assert "MAM-ARC-003" in rules(scan_bytes(data, "a.tar"))


def test_a_symlink_inside_the_tree_is_only_a_link_finding():
    data = make_tar((entry("dir/link", tarfile.SYMTYPE, "../other"), b""))
    found = rules(scan_bytes(data, "a.tar"))
    assert "MAM-ARC-004" in found
    assert "MAM-ARC-003" not in found


def test_a_hardlink_to_an_absolute_path_is_an_escape():
    data = make_tar((entry("h", tarfile.LNKTYPE, "/etc/shadow"), b""))
    assert "MAM-ARC-003" in rules(scan_bytes(data, "a.tar"))


def test_device_and_fifo_members_are_reported():
    data = make_tar((entry("dev", tarfile.CHRTYPE), b""), (entry("fifo", tarfile.FIFOTYPE), b""))
    assert "MAM-ARC-005" in rules(scan_bytes(data, "a.tar"))


def test_a_truncated_tar_is_reported():
    data = make_tar((entry("big.bin"), b"x" * 5000))
    assert "MAM-ARC-009" in rules(scan_bytes(data[:2000], "a.tar"))


def test_garbage_after_the_end_of_archive_marker_is_reported():
    data = make_tar((entry("a"), b"x")) + b"hidden payload"
    assert "MAM-ARC-010" in rules(scan_bytes(data, "a.tar"))


def test_a_forged_huge_pax_header_is_refused_before_it_is_read():
    info = entry("x", tarfile.XHDTYPE)
    block = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT))
    block[124:136] = b"%011o\0" % (0o77777777777)
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block[:512])
    data = bytes(block[:512]) + b"\0" * 4096
    assert "MAM-ARC-009" in rules(scan_bytes(data, "a.tar"))


def test_iter_tar_members_describes_kinds_for_other_handlers():
    class Ctx:
        limits = ScanPolicy().limits
        member_path = ()

        def __init__(self):
            self.reported: list[str] = []

        def report(self, rule_id, message, **kw):
            self.reported.append(rule_id)

        def check_deadline(self):
            pass

    data = make_tar((entry("f"), b"abc"), (entry("l", tarfile.SYMTYPE, "f"), b""))
    members = list(iter_tar_members(BytesSource(data), Ctx()))
    assert [(m.name, m.kind) for m in members] == [
        ("f", MemberKind.FILE),
        ("l", MemberKind.SYMLINK),
    ]
    assert members[0].source is not None
    assert members[0].source.open().read() == b"abc"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2047), st.integers(0, 255)), max_size=10))
def test_mutated_tars_never_crash_the_scanner(flips):
    data = bytearray(make_tar((entry("a.bin"), b"hello" * 100), (entry("b"), b"x")))
    for pos, value in flips:
        data[pos % len(data)] = value
    report = scan_bytes(bytes(data), "a.tar")
    assert not any("tar parser failed" in f.message for f in report.findings)


def test_a_hardlink_to_an_earlier_member_of_the_same_archive_is_benign():
    # dateutil's zoneinfo tarball links zone aliases to the zone stored before them.
    data = make_tar(
        (entry("Zone/A"), b"TZif data"), (entry("Zone/B", tarfile.LNKTYPE, "Zone/A"), b"")
    )
    report = scan_bytes(data, "zones.tar")
    assert not {"MAM-ARC-003", "MAM-ARC-004"} & rules(report)


def test_a_hardlink_to_a_name_not_stored_before_it_is_reported():
    data = make_tar((entry("Zone/B", tarfile.LNKTYPE, "Zone/A"), b""), (entry("Zone/A"), b"x"))
    assert "MAM-ARC-004" in rules(scan_bytes(data, "zones.tar"))
