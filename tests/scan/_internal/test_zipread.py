"""The strict zip reader: every parser differential is a finding, members are scanned once."""

from __future__ import annotations

import io
import os
import pickle
import stat
import struct
import warnings
import zipfile
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamori.findings import ScanReport
from mamori.scan import scan_bytes
from mamori.scan._internal.zipread import zip_names_from_probe
from mamori.scan.formats.interface import Probe
from mamori.scan.limits import ScanLimits
from mamori.scan.policy import ScanPolicy


class _Payload:
    def __reduce__(self):
        return (os.system, ("true",))


CENTRAL = b"PK\x01\x02"
LOCAL = b"PK\x03\x04"
EOCD = b"PK\x05\x06"


def make_zip(
    members: dict[str, bytes] | list[tuple[str, bytes]],
    method: int = zipfile.ZIP_STORED,
    comment: bytes = b"",
) -> bytes:
    buf = io.BytesIO()
    items = members.items() if isinstance(members, dict) else members
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns on duplicate names, which we want
        with zipfile.ZipFile(buf, "w", compression=method) as zf:
            for name, data in items:
                zf.writestr(name, data)
            zf.comment = comment
    return buf.getvalue()


def rules(report: ScanReport) -> set[str]:
    return {f.rule_id for f in report.findings}


def central_offsets(data: bytes) -> list[int]:
    eocd = data.rfind(EOCD)
    cd_size, cd_offset = struct.unpack_from("<LL", data, eocd + 12)
    out, pos = [], cd_offset
    while pos < cd_offset + cd_size:
        out.append(pos)
        n, m, k = struct.unpack_from("<HHH", data, pos + 28)
        pos += 46 + n + m + k
    return out


def local_offsets(data: bytes) -> list[int]:
    return [struct.unpack_from("<L", data, c + 42)[0] for c in central_offsets(data)]


def patch(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, offset, *values)
    return bytes(buf)


def patch_both(
    data: bytes, index: int, central_field: int, local_field: int, fmt: str, *, value: int
) -> bytes:
    data = patch(data, central_offsets(data)[index] + central_field, fmt, value)
    return patch(data, local_offsets(data)[index] + local_field, fmt, value)


def test_a_clean_archive_has_no_container_findings_and_lists_every_member():
    data = make_zip({"a.bin": b"x" * 100, "b.bin": b"y" * 50}, zipfile.ZIP_DEFLATED)
    report = scan_bytes(data, "a.zip")
    assert not {r for r in rules(report) if r.startswith(("MAM-ZIP", "MAM-ARC"))}
    assert sorted(m.path for m in report.members) == [("a.bin",), ("b.bin",)]


def test_bzip2_and_lzma_members_decode_to_their_original_bytes():
    payload = b"abc" * 1000
    for method in (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        report = scan_bytes(make_zip({"m": payload}, method), "a.zip")
        assert report.members[0].size == len(payload)
        assert "MAM-GEN-008" not in rules(report)


def test_a_wrong_crc_in_both_headers_is_a_checksum_finding():
    data = make_zip({"a.bin": b"hello"})
    data = patch_both(data, 0, 16, 14, "<L", value=0xDEADBEEF)
    assert "MAM-GEN-008" in rules(scan_bytes(data, "a.zip"))


def test_a_local_name_that_differs_from_the_central_name_is_reported():
    data = make_zip({"a.bin": b"hello"})
    data = patch(data, local_offsets(data)[0] + 30, "<B", ord("b"))
    assert "MAM-ZIP-002" in rules(scan_bytes(data, "a.zip"))


def test_a_local_size_that_differs_from_the_central_size_is_reported():
    data = make_zip({"a.bin": b"hello"})
    data = patch(data, local_offsets(data)[0] + 22, "<L", 4)
    assert "MAM-ZIP-002" in rules(scan_bytes(data, "a.zip"))


def test_duplicate_member_names_are_reported():
    data = make_zip([("a.bin", b"one"), ("a.bin", b"two")])
    assert "MAM-ZIP-003" in rules(scan_bytes(data, "a.zip"))


def test_every_copy_of_a_duplicated_name_is_scanned_by_content_under_its_own_label():
    """zipfile reads the last entry of a name, miniz the first: both are scanned."""
    evil = pickle.dumps(_Payload(), protocol=2)
    data = make_zip([("model.pkl", pickle.dumps([1, 2])), ("model.pkl", evil)])
    report = scan_bytes(data, "a.zip")
    second = local_offsets(data)[1]
    label = f"model.pkl [copy 2 at offset {second}]"
    assert [m.path for m in report.members] == [("model.pkl",), (label,)]
    hits = [f for f in report.findings if f.rule_id == "MAM-PKL-001"]
    assert hits
    assert {f.location.member for f in hits} == {(label,)}


def test_a_payload_in_the_first_copy_of_a_duplicated_name_is_found_too():
    evil = pickle.dumps(_Payload(), protocol=2)
    data = make_zip([("model.pkl", evil), ("model.pkl", pickle.dumps([1, 2]))])
    hits = [f for f in scan_bytes(data, "a.zip").findings if f.rule_id == "MAM-PKL-001"]
    assert {f.location.member for f in hits} == {("model.pkl",)}


def test_names_that_collide_after_case_folding_are_reported():
    data = make_zip({"Model.pkl": b"one", "model.pkl": b"two"})
    assert "MAM-ZIP-003" in rules(scan_bytes(data, "a.zip"))


def test_names_that_collide_after_dot_slash_normalisation_are_reported():
    data = make_zip({"./data.pkl": b"one", "data.pkl": b"two"})
    assert "MAM-ZIP-003" in rules(scan_bytes(data, "a.zip"))


def test_prepended_data_is_reported_picklescan_polyglot_style():
    # A pickle in front of a zip: pickle.load reads the prefix, zipfile the archive.
    data = b"\x80\x02cos\nsystem\nq\x00." + make_zip({"a.bin": b"hello"})
    assert "MAM-ZIP-005" in rules(scan_bytes(data, "a.zip"))


def test_appended_data_after_the_end_record_is_reported():
    data = make_zip({"a.bin": b"hello"}) + b"trailing payload"
    assert "MAM-ZIP-006" in rules(scan_bytes(data, "a.zip"))


def test_a_comment_hiding_zip_structures_is_reported():
    hidden = make_zip({"evil.pkl": b"x"})
    data = make_zip({"a.bin": b"hello"}, comment=hidden[:60])
    assert "MAM-ZIP-008" in rules(scan_bytes(data, "a.zip"))


def test_a_whole_archive_in_the_comment_is_reported_and_read_as_zipfile_reads_it():
    hidden = make_zip({"evil.pkl": b"x"})
    data = make_zip({"a.bin": b"hello"}, comment=hidden)
    report = scan_bytes(data, "a.zip")
    assert "MAM-ZIP-007" in rules(report)
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == ["evil.pkl"]
    assert [m.path for m in report.members] == [("evil.pkl",)]


def test_a_second_end_record_inside_the_comment_is_reported():
    first = make_zip({"a.bin": b"hello"})
    eocd = first[first.rfind(EOCD) :]
    # The real end record comes first; a copy of it closes the file inside the comment.
    body = first[: first.rfind(EOCD)]
    real = patch(eocd, 20, "<H", len(eocd))
    data = body + real + eocd
    assert "MAM-ZIP-007" in rules(scan_bytes(data, "a.zip"))


def test_two_entries_sharing_one_local_header_are_overlapping():
    data = make_zip({"a.bin": b"hello", "b.bin": b"world"})
    data = patch(data, central_offsets(data)[1] + 42, "<L", 0)
    found = rules(scan_bytes(data, "a.zip"))
    assert "MAM-ZIP-004" in found
    assert "MAM-ZIP-002" in found  # the shared header names a.bin, not b.bin


def test_saturated_end_record_without_zip64_records_is_reported():
    data = make_zip({"a.bin": b"hello"})
    eocd = data.rfind(EOCD)
    data = patch(data, eocd + 8, "<HH", 0xFFFF, 0xFFFF)
    assert "MAM-ZIP-009" in rules(scan_bytes(data, "a.zip"))


def test_zip64_records_that_contradict_the_classic_end_record_are_reported():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.bin", b"hello")
    data = buf.getvalue()
    eocd = data.rfind(EOCD)
    cd_size, cd_offset = struct.unpack_from("<LL", data, eocd + 12)
    z64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 1, 2, cd_size, cd_offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, eocd, 1)
    data = data[:eocd] + z64 + locator + data[eocd:]
    assert "MAM-ZIP-009" in rules(scan_bytes(data, "a.zip"))


def test_an_entry_count_that_disagrees_with_the_directory_is_reported():
    data = make_zip({"a.bin": b"hello"})
    eocd = data.rfind(EOCD)
    data = patch(data, eocd + 8, "<HH", 2, 2)
    assert "MAM-ZIP-013" in rules(scan_bytes(data, "a.zip"))


def test_zip_slip_traversal_and_absolute_names_are_reported():
    data = make_zip({"../../etc/cron.d/x": b"a", "/abs/path": b"b", "C:\\win": b"c"})
    found = rules(scan_bytes(data, "a.zip"))
    assert {"MAM-ARC-001", "MAM-ARC-002", "MAM-ZIP-010"} <= found


def test_a_nul_in_a_member_name_is_reported():
    data = make_zip({"abcd.pkl": b"a"})
    data = patch(data, central_offsets(data)[0] + 46 + 4, "<B", 0)
    data = patch(data, local_offsets(data)[0] + 30 + 4, "<B", 0)
    assert "MAM-ZIP-010" in rules(scan_bytes(data, "a.zip"))


def test_a_symlink_entry_is_reported():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    assert "MAM-ARC-004" in rules(scan_bytes(buf.getvalue(), "a.zip"))


def test_an_encrypted_member_is_reported_and_not_scanned():
    data = make_zip({"a.bin": b"hello", "b.bin": b"world"})
    data = patch_both(data, 0, 8, 6, "<H", value=0x1)
    report = scan_bytes(data, "a.zip")
    assert "MAM-ARC-006" in rules(report)
    assert [m.path for m in report.members] == [("b.bin",)]


def test_an_unsupported_method_is_reported_and_not_scanned():
    data = make_zip({"a.bin": b"hello"})
    data = patch_both(data, 0, 10, 8, "<H", value=99)
    report = scan_bytes(data, "a.zip")
    assert "MAM-ARC-007" in rules(report)
    assert report.members == ()


def test_corrupt_deflate_data_is_reported():
    data = make_zip({"a.bin": b"hello" * 100}, zipfile.ZIP_DEFLATED)
    start = local_offsets(data)[0] + 30 + len("a.bin")
    data = data[:start] + b"\xff" * 8 + data[start + 8 :]
    assert "MAM-ZIP-012" in rules(scan_bytes(data, "a.zip"))


def test_a_declared_size_that_differs_from_the_inflated_size_is_reported():
    data = make_zip({"a.bin": b"hello" * 100}, zipfile.ZIP_DEFLATED)
    data = patch_both(data, 0, 24, 22, "<L", value=400)
    assert "MAM-ZIP-011" in rules(scan_bytes(data, "a.zip"))


SMALL = ScanPolicy(
    limits=ScanLimits(ratio_floor=1 << 20, max_compression_ratio=10, max_decompressed_bytes=1 << 30)
)


def test_a_bomb_with_an_honest_declared_size_is_refused_before_decompression():
    data = make_zip({"zeros": b"\0" * (4 << 20)}, zipfile.ZIP_DEFLATED)
    report = scan_bytes(data, "a.zip", SMALL)
    assert "MAM-LIM-006" in rules(report)
    assert report.members == ()


def test_a_bomb_that_lies_about_its_size_is_stopped_while_streaming():
    data = make_zip({"zeros": b"\0" * (4 << 20)}, zipfile.ZIP_DEFLATED)
    data = patch_both(data, 0, 24, 22, "<L", value=1000)
    assert "MAM-LIM-006" in rules(scan_bytes(data, "a.zip", SMALL))


def test_the_total_decompression_budget_is_enforced():
    policy = ScanPolicy(limits=ScanLimits(max_decompressed_bytes=1000))
    data = make_zip({"a": b"abc" * 1000}, zipfile.ZIP_DEFLATED)
    assert "MAM-LIM-001" in rules(scan_bytes(data, "a.zip", policy))


def test_one_bomb_member_does_not_hide_the_members_after_it():
    data = make_zip({"zeros": b"\0" * (4 << 20), "after.bin": b"hello"}, zipfile.ZIP_DEFLATED)
    data = patch_both(data, 0, 24, 22, "<L", value=1000)
    report = scan_bytes(data, "a.zip", SMALL)
    assert ("after.bin",) in [m.path for m in report.members]


def test_data_descriptors_written_by_zipfile_on_a_stream_are_not_a_differential():
    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.buf = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b) -> int:
            self.buf += b
            return len(b)

    out = Unseekable()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.bin", b"hello" * 100)
    found = rules(scan_bytes(bytes(out.buf), "a.zip"))
    assert not {r for r in found if r.startswith("MAM-ZIP")}


def test_names_come_from_the_central_directory_in_the_probe_tail():
    data = make_zip({"archive/data.pkl": b"x", "archive/version": b"3"})
    probe = Probe(head=data, tail=data, size=len(data), name="m.pt")
    assert zip_names_from_probe(probe) == ["archive/data.pkl", "archive/version"]


def test_names_come_from_local_headers_when_the_tail_is_unknown():
    data = make_zip({"archive/data.pkl": b"x", "archive/version": b"3"})
    probe = Probe(head=data[:200], tail=None, size=None, name="m.pt")
    assert zip_names_from_probe(probe) == ["archive/data.pkl", "archive/version"]


def test_names_from_a_probe_of_something_else_are_none():
    probe = Probe(head=b"hello world", tail=b"hello world", size=11, name="x")
    assert zip_names_from_probe(probe) is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes_behind_a_zip_signature_never_crash_and_yield_a_finding(tail: bytes):
    report = scan_bytes(LOCAL + tail, "a.zip")
    assert report.findings


_BASE = make_zip({"a.bin": b"hello" * 20, "b/c.pkl": b"\x80\x02N."}, zipfile.ZIP_DEFLATED)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_BASE) - 1), st.integers(0, 255)), max_size=8))
def test_mutated_archives_never_crash_the_scanner(flips: list[tuple[int, int]]):
    data = bytearray(_BASE)
    for pos, value in flips:
        data[pos] = value
    report = scan_bytes(bytes(data), "a.zip")
    assert not any(
        f.rule_id == "MAM-GEN-001" and "zip parser failed" in f.message for f in report.findings
    )


def test_crc_is_checked_against_the_inflated_bytes():
    payload = b"hello" * 100
    data = make_zip({"a.bin": payload}, zipfile.ZIP_DEFLATED)
    report = scan_bytes(data, "a.zip")
    assert zlib.crc32(payload) == zipfile.ZipFile(io.BytesIO(data)).getinfo("a.bin").CRC
    assert "MAM-GEN-008" not in rules(report)
