"""NumPy .npy / .npz: strict header parsing, exact sizes, object arrays analysed as pickles."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamori.findings import FileFormat, Severity, Verdict
from mamori.scan import scan_bytes, scan_path
from mamori.scan.formats.numpy import (
    NpyHeaderError,
    NumpyHandler,
    parse_descr,
    parse_npy_header,
    typestr_info,
)


class _Payload:
    """Harmless stand-in for a malicious object: unpickling it would run ``true``."""

    def __reduce__(self):
        return (os.system, ("true",))


def _npy(array: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, **kw)
    return buf.getvalue()


def _rules(report) -> set[str]:
    return {f.rule_id for f in report.findings}


def _header(text: str, version: tuple[int, int] = (1, 0)) -> bytes:
    raw = text.encode("latin-1")
    if version == (1, 0):
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(raw)) + raw
    return b"\x93NUMPY" + bytes(version) + struct.pack("<I", len(raw)) + raw


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4)),
        np.array(3.5),
        np.zeros((0, 5), dtype=np.uint8),
        np.array([True, False]),
        np.array(["ab", "cde"]),
        np.array([b"x", b"yz"]),
        np.array(["2020-01-01"], dtype="datetime64[s]"),
        np.ones(3, dtype=np.complex128),
        np.zeros(2, dtype=[("x", "<i4"), ("y", "S3"), ("z", "<f8", (2, 2))]),
        np.zeros(2, dtype=np.dtype([("a", "u1"), ("b", "<i4")], align=True)),
        np.zeros(3, dtype=">i2"),
    ],
    ids=lambda a: f"{a.dtype.str}-{a.shape}",
)
def test_numeric_arrays_written_by_numpy_are_safe(array):
    report = scan_bytes(_npy(array), "a.npy")
    assert report.format is FileFormat.NUMPY
    assert report.findings == ()
    assert report.verdict is Verdict.SAFE


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_every_npy_version_is_parsed(version):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.arange(5, dtype="<f8"), version=version)
    header = parse_npy_header(io.BytesIO(buf.getvalue()))
    assert header.version == version
    assert header.data_offset + header.data_size == len(buf.getvalue())


def test_benign_object_array_is_a_low_finding_and_safe():
    report = scan_bytes(_npy(np.array([1, "two", None], dtype=object)), "o.npy")
    assert _rules(report) == {"MAM-NPY-003"}
    assert report.verdict is Verdict.SAFE


def test_object_array_with_a_reduce_payload_is_unsafe():
    report = scan_bytes(_npy(np.array([_Payload()], dtype=object), allow_pickle=True), "o.npy")
    assert report.verdict is Verdict.UNSAFE
    assert any(
        f.rule_id.startswith("MAM-PKL") and f.severity >= Severity.HIGH for f in report.findings
    )


def test_trailing_bytes_after_numeric_data_are_reported():
    report = scan_bytes(_npy(np.arange(4, dtype="<i4")) + b"hidden", "a.npy")
    assert "MAM-NPY-002" in _rules(report)
    assert report.verdict is Verdict.UNSAFE


def test_truncated_numeric_data_is_reported():
    report = scan_bytes(_npy(np.arange(4, dtype="<i4"))[:-3], "a.npy")
    assert "MAM-NPY-002" in _rules(report)


def test_pickle_hidden_after_an_object_array_is_reported_and_analysed():
    data = _npy(np.array([1], dtype=object))
    report = scan_bytes(data + pickle.dumps(_Payload(), protocol=4), "a.npy")
    assert {"MAM-NPY-002", "MAM-PKL-001"} <= _rules(report)
    trailing = next(f for f in report.findings if f.rule_id == "MAM-NPY-002")
    assert trailing.location.offset == len(data)


@pytest.mark.parametrize(
    "header",
    [
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
        "{'descr': '<f8', 'fortran_order': False}",
        "{'descr': '<f8', 'fortran_order': 0, 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (-2,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': [2]}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': 2}",
        "{'descr': '<f7', 'fortran_order': False, 'shape': (2,)}",
        "{'descr': 'object', 'fortran_order': False, 'shape': (2,)}",
        "{'descr': __import__('os').system('true'), 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'descr': '<f4'}",
        "['descr', '<f8']",
        "{'descr': [('a',)], 'fortran_order': False, 'shape': (2,)}",
        "{'descr': [('a', '<i4'), ('a', '<i4')], 'fortran_order': False, 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)",
    ],
)
def test_headers_numpy_would_not_write_are_malformed(header):
    report = scan_bytes(_header(header), "a.npy")
    assert "MAM-NPY-001" in _rules(report)
    assert report.verdict is Verdict.UNSAFE


def test_a_header_is_never_evaluated(tmp_path):
    marker = tmp_path / "ran"
    header = f"{{'descr': open({str(marker)!r}, 'w'), 'fortran_order': False, 'shape': ()}}"
    scan_bytes(_header(header), "a.npy")
    assert not marker.exists()


def test_unknown_npy_version_is_malformed():
    data = b"\x93NUMPY\x04\x00" + struct.pack("<I", 0)
    with pytest.raises(NpyHeaderError, match="version"):
        parse_npy_header(io.BytesIO(data))


def test_header_larger_than_the_bound_is_refused_before_reading():
    data = b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFFF)
    with pytest.raises(NpyHeaderError, match="exceeds"):
        parse_npy_header(io.BytesIO(data), max_header=1000)


def test_deeply_nested_header_is_malformed_not_a_crash():
    header = "{'descr': " + "[" * 5000 + "]" * 5000 + ", 'fortran_order': False, 'shape': ()}"
    assert "MAM-NPY-001" in _rules(scan_bytes(_header(header), "a.npy"))


@pytest.mark.parametrize(
    ("typestr", "size", "has_object"),
    [
        ("<f8", 8, False),
        ("|b1", 1, False),
        ("<U5", 20, False),
        ("|S0", 0, False),
        ("|O", 8, True),
        ("<M8[ns]", 8, False),
        ("|V7", 7, False),
        ("<c16", 16, False),
    ],
)
def test_type_strings_are_sized_like_numpy(typestr, size, has_object):
    info = typestr_info(typestr)
    assert (info.itemsize, info.has_object) == (size, has_object)
    assert info.itemsize == np.dtype(typestr).itemsize


def test_structured_dtype_with_an_object_field_is_an_object_array():
    assert parse_descr([("a", "<i4"), ("b", "|O")]).has_object


def test_sniff_ignores_an_unknown_version():
    from mamori.scan.formats.interface import Probe

    probe = Probe(head=b"\x93NUMPY\x09\x00rest", tail=None, size=None, name="")
    assert not NumpyHandler().sniff(probe)


def test_savez_archives_are_safe(tmp_path: Path):
    path = tmp_path / "a.npz"
    np.savez(path, a=np.arange(3), b=np.ones((2, 2)))
    report = scan_path(path)
    assert report.format is FileFormat.NUMPY_NPZ
    assert report.verdict is Verdict.SAFE
    assert {m.format for m in report.members} == {FileFormat.NUMPY}


def test_savez_compressed_archives_are_safe(tmp_path: Path):
    path = tmp_path / "a.npz"
    np.savez_compressed(path, a=np.arange(1000), b=np.array(["x"]))
    report = scan_path(path)
    assert report.format is FileFormat.NUMPY_NPZ
    assert report.verdict is Verdict.SAFE


def test_savez_with_a_benign_object_array_is_safe(tmp_path: Path):
    path = tmp_path / "a.npz"
    np.savez(path, a=np.arange(3), names=np.array(["x", 1, None], dtype=object))
    report = scan_path(path)
    assert report.verdict is Verdict.SAFE
    assert "MAM-NPY-003" in _rules(report)


def test_npz_member_with_a_payload_is_found(tmp_path: Path):
    path = tmp_path / "a.npz"
    np.savez(path, a=np.arange(3), evil=np.array([_Payload()], dtype=object))
    report = scan_path(path)
    assert report.verdict is Verdict.UNSAFE
    assert any(f.location.member == ("evil.npy",) for f in report.findings)


def test_npz_member_with_trailing_data_is_found(tmp_path: Path):
    path = tmp_path / "a.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.npy", _npy(np.arange(3)) + b"junk")
    assert "MAM-NPY-002" in _rules(scan_path(path))


_DTYPES = st.sampled_from(["<f4", "<f8", "|u1", "<i2", ">i8", "|b1", "<U3", "|S5", "<c8"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_DTYPES, st.lists(st.integers(0, 5), max_size=4), st.booleans())
def test_headers_numpy_writes_are_parsed_exactly(dtype, shape, fortran):
    array = np.zeros(shape, dtype=dtype, order="F" if fortran else "C")
    data = _npy(array)
    header = parse_npy_header(io.BytesIO(data))
    assert header.shape == tuple(shape)
    assert header.data_offset + header.data_size == len(data)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_after_the_magic_yield_no_crash(tail):
    report = scan_bytes(b"\x93NUMPY\x01\x00" + tail, "a.npy")
    assert not any(f.rule_id == "MAM-GEN-001" for f in report.findings)


@settings(max_examples=150, deadline=None)
@given(st.text(st.characters(max_codepoint=255), max_size=200))
def test_any_header_text_is_parsed_or_rejected_cleanly(text):
    data = _header(text)
    try:
        header = parse_npy_header(io.BytesIO(data))
    except NpyHeaderError:
        return
    assert header.data_offset == len(data)


def test_a_python_2_header_with_long_integers_is_read_as_numpy_reads_it():
    # numpy retries version 1/2 headers without the "L" suffix Python 2 wrote on longs.
    text = "{'descr': '<f8', 'fortran_order': False, 'shape': (2L,), }"
    data = _header(text.ljust(70) + "\n") + b"\x00" * 16
    report = scan_bytes(data, "win64python2.npy")
    assert report.format is FileFormat.NUMPY
    assert report.verdict is Verdict.SAFE, report.findings


def test_long_integer_suffixes_are_not_accepted_in_a_version_3_header():
    text = "{'descr': '<f8', 'fortran_order': False, 'shape': (2L,), }"
    assert "MAM-NPY-001" in _rules(scan_bytes(_header(text, (3, 0)) + b"\x00" * 16, "a.npy"))


def test_a_newline_after_an_object_array_pickle_is_not_hidden_data():
    data = _npy(np.array([1, "a"], dtype=object), allow_pickle=True)
    assert "MAM-NPY-002" not in _rules(scan_bytes(data + b"\n", "a.npy"))
    assert "MAM-NPY-002" in _rules(scan_bytes(data + b"\nX", "a.npy"))
