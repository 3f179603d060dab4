"""Compressed streams decompress into one child with bomb limits; joblib dumps included."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import zlib

import joblib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.findings import FileFormat, ScanReport
from mamori.scan import scan_bytes, scan_path
from mamori.scan.formats.compressed import LzmaHandler, ZlibHandler
from mamori.scan.formats.interface import Probe
from mamori.scan.limits import ScanLimits
from mamori.scan.policy import ScanPolicy

PAYLOAD = b"some member bytes " * 50


def rules(report: ScanReport) -> set[str]:
    return {f.rule_id for f in report.findings}


def probe(data: bytes) -> Probe:
    return Probe(head=data[:65536], tail=data[-65536:], size=len(data), name="x")


def child(report: ScanReport) -> tuple[str, ...]:
    (member,) = report.members
    return member.path


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (gzip.compress(PAYLOAD), FileFormat.GZIP),
        (bz2.compress(PAYLOAD), FileFormat.BZIP2),
        (lzma.compress(PAYLOAD), FileFormat.XZ),
        (lzma.compress(PAYLOAD, format=lzma.FORMAT_ALONE), FileFormat.LZMA),
        (zlib.compress(PAYLOAD), FileFormat.ZLIB),
    ],
    # gzip embeds the time, so byte-derived ids would differ between xdist workers
    ids=["gzip", "bzip2", "xz", "lzma", "zlib"],
)
def test_each_stream_format_decompresses_into_one_child(data, fmt):
    report = scan_bytes(data, "x")
    assert report.format is fmt
    assert child(report) == ("<decompressed>",)
    assert report.members[0].size == len(PAYLOAD)
    assert not {r for r in rules(report) if r.startswith("MAM-ARC")}


def test_zstd_frames_decompress_when_the_module_is_installed():
    zstd = pytest.importorskip("backports.zstd")
    report = scan_bytes(zstd.compress(PAYLOAD), "x")
    assert report.format is FileFormat.ZSTD
    assert report.members[0].size == len(PAYLOAD)


@pytest.mark.parametrize("method", ["zlib", "gzip", "bz2", "lzma", "xz"])
def test_joblib_compressed_dumps_decompress_into_a_child(tmp_path, method):
    path = tmp_path / f"model.{method}"
    joblib.dump({"weights": list(range(100))}, path, compress=(method, 3))
    report = scan_path(path)
    assert child(report) == ("<decompressed>",)
    assert not {r for r in rules(report) if r.startswith(("MAM-ARC", "MAM-LIM"))}


def test_multi_member_gzip_is_read_to_the_end_like_gzip_d():
    data = gzip.compress(b"first ") + gzip.compress(b"second")
    report = scan_bytes(data, "x.gz")
    assert report.members[0].size == len(b"first second")
    assert not {r for r in rules(report) if r.startswith("MAM-ARC")}


def test_trailing_garbage_after_a_gzip_stream_is_reported():
    data = gzip.compress(PAYLOAD) + b"not a gzip member"
    assert "MAM-ARC-010" in rules(scan_bytes(data, "x.gz"))


def test_a_truncated_gzip_stream_is_reported():
    data = gzip.compress(PAYLOAD * 10)
    assert "MAM-ARC-009" in rules(scan_bytes(data[: len(data) // 2], "x.gz"))


def test_a_highly_compressible_stream_hits_the_ratio_limit():
    policy = ScanPolicy(limits=ScanLimits(ratio_floor=1 << 20, max_compression_ratio=50))
    data = zlib.compress(b"\0" * (8 << 20), 9)
    assert "MAM-LIM-006" in rules(scan_bytes(data, "x", policy))


def test_the_absolute_decompression_budget_is_enforced():
    policy = ScanPolicy(limits=ScanLimits(max_decompressed_bytes=100))
    assert "MAM-LIM-001" in rules(scan_bytes(gzip.compress(PAYLOAD), "x.gz", policy))


def test_nested_compression_is_followed_to_the_innermost_bytes():
    report = scan_bytes(gzip.compress(bz2.compress(PAYLOAD)), "x")
    assert ("<decompressed>", "<decompressed>") in [m.path for m in report.members]


@pytest.mark.parametrize(
    "text", [b"Hello, world", b"HK text", b"x^ caret", b"The quick brown fox", b'{"a": 1}']
)
def test_plain_text_is_not_mistaken_for_zlib(text):
    assert not ZlibHandler().sniff(probe(text))


def test_plain_text_is_not_mistaken_for_lzma_alone():
    assert not LzmaHandler().sniff(probe(b"]" + b"hello world, this is text"))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_behind_a_gzip_header_never_crash_and_yield_a_finding(tail):
    # Named like a model so that bytes too short to be gzip still yield "unrecognised".
    report = scan_bytes(b"\x1f\x8b\x08\x00" + tail, "model.pkl")
    assert report.findings


def test_lz4_frames_decompress_and_joblib_lz4_dumps_are_scanned(tmp_path):
    lz4_frame = pytest.importorskip("lz4.frame")
    report = scan_bytes(lz4_frame.compress(PAYLOAD), "x")
    assert report.format is FileFormat.LZ4
    assert report.members[0].size == len(PAYLOAD)
    path = tmp_path / "model.joblib"
    joblib.dump({"weights": list(range(100))}, path, compress="lz4")
    clean = scan_path(path)
    assert clean.format is FileFormat.LZ4
    assert child(clean) == ("<decompressed>",)
    assert clean.verdict.value == "safe"


def test_a_payload_inside_a_joblib_lz4_dump_is_found(tmp_path):
    pytest.importorskip("lz4.frame")

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))  # harmless: never loaded, only scanned

    path = tmp_path / "model.joblib"
    joblib.dump({"model": Payload()}, path, compress="lz4")
    report = scan_path(path)
    assert report.verdict.value == "unsafe"
    assert any(f.severity.name == "CRITICAL" for f in report.findings)


def test_a_truncated_lz4_frame_is_reported():
    lz4_frame = pytest.importorskip("lz4.frame")
    data = lz4_frame.compress(PAYLOAD * 10)
    assert "MAM-ARC-009" in rules(scan_bytes(data[: len(data) // 2], "x"))


def _zfile(data: bytes, *, space: bool = False) -> bytes:
    """joblib < 0.10's write_zfile: ``ZF`` + hex length padded to 19 bytes + zlib."""
    return (
        b"ZF" + hex(len(data)).encode().ljust(19) + (b" " if space else b"") + zlib.compress(data)
    )


@pytest.mark.parametrize("space", [False, True])
def test_a_legacy_joblib_zfile_is_inflated_and_its_pickle_scanned(space):
    class _Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    import pickle

    report = scan_bytes(_zfile(pickle.dumps(_Payload(), protocol=2), space=space), "m.pkl")
    assert report.format is FileFormat.ZLIB
    assert "MAM-PKL-001" in rules(report)


def test_a_legacy_joblib_zfile_of_plain_data_is_safe():
    import pickle

    report = scan_bytes(_zfile(pickle.dumps({"a": [1, 2]}, protocol=2)), "m.gz")
    assert report.format is FileFormat.ZLIB
    assert report.findings == ()


def test_a_legacy_joblib_zfile_inside_a_gzip_stream_is_scanned():
    import pickle

    class _Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    inner = _zfile(pickle.dumps(_Payload(), protocol=2))
    report = scan_bytes(gzip.compress(inner), "m.pkl.gz")
    assert "MAM-PKL-001" in rules(report)
