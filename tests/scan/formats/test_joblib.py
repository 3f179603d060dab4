"""joblib dumps: inline numpy array data consumed through the pickle analyser's BUILD hook.

Every sample is written with the real ``joblib.dump``; none is ever loaded.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mamori.findings import FileFormat, Verdict
from mamori.scan import scan_bytes, scan_path

COMPRESSORS = [
    (None, FileFormat.JOBLIB),
    ("zlib", FileFormat.ZLIB),
    ("gzip", FileFormat.GZIP),
    ("bz2", FileFormat.BZIP2),
    ("lzma", FileFormat.LZMA),
    ("xz", FileFormat.XZ),
]


class _Payload:
    def __reduce__(self):
        return (os.system, ("true",))


def _rules(report) -> set[str]:
    return {f.rule_id for f in report.findings}


def _dump(obj, path: Path, compress=None) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        joblib.dump(obj, path, compress=(compress, 3) if compress else 0)
    return path


def _raw(obj) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def forest():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 4)), rng.integers(0, 2, 40)
    return RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x, y)


@pytest.fixture(scope="module")
def pipeline():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 3)), rng.integers(0, 2, 30)
    return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(x, y)


@pytest.mark.parametrize(("compress", "top"), COMPRESSORS, ids=str)
def test_random_forest_dumps_are_safe_with_every_compressor(forest, tmp_path, compress, top):
    report = scan_path(_dump(forest, tmp_path / "m.joblib", compress))
    assert report.format is top
    assert report.verdict is Verdict.SAFE, report.findings
    if compress:
        assert [m.format for m in report.members] == [FileFormat.JOBLIB]


def test_pipeline_dump_is_safe(pipeline, tmp_path):
    report = scan_path(_dump(pipeline, tmp_path / "p.joblib"))
    assert report.format is FileFormat.JOBLIB
    assert report.verdict is Verdict.SAFE, report.findings


def test_arrays_of_every_kind_are_consumed_exactly():
    obj = {
        "f": np.arange(12, dtype=np.float32).reshape(3, 4),
        "fortran": np.asfortranarray(np.ones((3, 2))),
        "big": np.zeros(3, dtype=">i8"),
        "text": np.array(["a", "bcd"]),
        "record": np.zeros(2, dtype=[("x", "<i4"), ("y", "S3")]),
        "empty": np.zeros((0, 3)),
        "scalar": np.array(1.5),
        "objects": np.array([1, "two", None], dtype=object),
        "when": np.array(["2020-01-01"], dtype="datetime64[D]"),
    }
    report = scan_bytes(_raw(obj), "a.joblib")
    assert report.format is FileFormat.JOBLIB
    assert report.verdict is Verdict.SAFE, report.findings


@pytest.mark.parametrize(("compress", "top"), COMPRESSORS, ids=str)
def test_reduce_payload_is_found_with_every_compressor(tmp_path, compress, top):
    obj = {"w": np.ones(4), "x": _Payload()}
    report = scan_path(_dump(obj, tmp_path / "m.joblib", compress))
    assert report.format is top
    assert report.verdict is Verdict.UNSAFE
    assert "MAM-PKL-001" in _rules(report)


def test_payload_inside_an_object_array_is_found():
    report = scan_bytes(_raw({"a": np.array([_Payload()], dtype=object)}), "a.joblib")
    assert "MAM-PKL-001" in _rules(report)


def test_payload_inside_an_object_array_of_a_compressed_dump_is_found(tmp_path):
    obj = {"w": np.ones(3), "a": np.array([_Payload()], dtype=object)}
    report = scan_path(_dump(obj, tmp_path / "m.joblib", "gzip"))
    assert "MAM-PKL-001" in _rules(report)


def test_payload_after_an_array_is_found():
    report = scan_bytes(_raw([np.arange(100.0), _Payload()]), "a.joblib")
    assert "MAM-PKL-001" in _rules(report)


class _NoTell(io.BytesIO):
    def tell(self) -> int:
        raise io.UnsupportedOperation


def test_dump_to_an_unseekable_stream_has_no_padding_and_is_safe():
    buf = _NoTell()
    joblib.dump({"a": np.arange(5, dtype=np.int16), "b": np.ones((2, 2))}, buf)
    report = scan_bytes(buf.getvalue(), "a.joblib")
    assert report.format is FileFormat.JOBLIB
    assert report.verdict is Verdict.SAFE, report.findings


def test_truncated_array_data_is_found():
    data = _raw(np.arange(1000, dtype=np.int64))
    assert "MAM-JOBLIB-001" in _rules(scan_bytes(data[:2000], "a.joblib"))


def test_padding_that_joblib_would_not_write_is_found():
    data = bytearray(_raw(np.arange(4, dtype=np.int64)))
    # alignment 16 (BININT1), SETITEMS, BUILD; then the padding length and the padding.
    at = data.index(b"\x10ub") + 4
    assert data[at] == 0xFF
    data[at] = 0x41
    assert "MAM-JOBLIB-001" in _rules(scan_bytes(bytes(data), "a.joblib"))


def test_trailing_pickle_after_the_dump_is_found_and_analysed():
    data = _raw({"w": np.ones(3)}) + pickle.dumps(_Payload(), protocol=4)
    report = scan_bytes(data, "a.joblib")
    assert {"MAM-JOBLIB-004", "MAM-PKL-001"} <= _rules(report)


def test_wrapper_whose_shape_is_not_a_tuple_of_integers_cannot_be_sized():
    data = _raw(np.arange(3, dtype=np.int64))
    # Swap the shape (3,) for None, same length (NONE NONE POP): the array size is unknown.
    tampered = data.replace(b"\x8c\x05shape\x94K\x03\x85", b"\x8c\x05shape\x94NN0", 1)
    assert tampered != data
    assert "MAM-JOBLIB-002" in _rules(scan_bytes(tampered, "a.joblib"))


def test_forged_element_size_of_a_fixed_dtype_is_ignored_like_numpy_does():
    # numpy's dtype.__setstate__ ignores elsize for fixed-size kinds: 'f8' stays 8 bytes. A
    # scanner that trusted it would skip 100 bytes per element where joblib reads 8.
    data = _raw([np.arange(3, dtype="<f8"), _Payload()])
    forged = data.replace(b"J\xff\xff\xff\xff", b"Jd\x00\x00\x00", 1)
    assert forged != data
    report = scan_bytes(forged, "a.joblib")
    assert "MAM-PKL-001" in _rules(report)
    assert "MAM-JOBLIB-001" not in _rules(report)


def test_object_dtype_without_the_object_flag_is_read_as_numbers_and_reported():
    # numpy follows the pickled flags: 'O8' with flags 0 makes joblib build an object array
    # from raw file bytes (pointers), and read 8 bytes per element rather than a pickle.
    data = _raw([np.arange(3, dtype="<i8"), _Payload()])
    forged = data.replace(b"\x8c\x02i8", b"\x8c\x02O8", 1)
    assert forged != data
    report = scan_bytes(forged, "a.joblib")
    assert {"MAM-JOBLIB-002", "MAM-PKL-001"} <= _rules(report)
    assert "MAM-JOBLIB-001" not in _rules(report)


def test_legacy_companion_file_wrapper_is_reported():
    name = b"../../etc/passwd"
    data = (
        b"\x80\x02cjoblib.numpy_pickle\nNDArrayWrapper\n)\x81}"
        b"X\x08\x00\x00\x00filename" + b"X" + len(name).to_bytes(4, "little") + name + b"sb."
    )
    report = scan_bytes(data, "old.pkl")
    assert report.format is FileFormat.JOBLIB
    assert "MAM-JOBLIB-003" in _rules(report)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_mutation_of_a_dump_is_scanned_without_crashing(data):
    raw = bytearray(_raw({"a": np.arange(20, dtype=np.float64), "b": [1, 2]}))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(raw) // 2, len(raw)))
    report = scan_bytes(bytes(raw[:cut]), "a.joblib")
    assert not any(f.rule_id == "MAM-GEN-001" for f in report.findings)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_dumps_of_every_binary_protocol_are_consumed_exactly(protocol):
    buf = io.BytesIO()
    joblib.dump(
        {"a": np.arange(5.0), "o": np.array([1, "x"], dtype=object)}, buf, protocol=protocol
    )
    report = scan_bytes(buf.getvalue(), "a.joblib")
    assert report.format is FileFormat.JOBLIB
    assert report.verdict is Verdict.SAFE, report.findings


# --- dumps whose first 64 KiB do not name joblib.numpy_pickle ---------------------------------
# The joblib sniff only sees the head; a large first entry pushes the first array past it and
# the PICKLE handler gets the file. It defers to joblib's reading when it meets the wrapper.
_LATE = "x" * 100_000


def test_a_dump_whose_first_array_lies_past_the_sniff_window_is_read_as_joblib():
    data = _raw({"pad": _LATE, "w": np.arange(1000, dtype="f8"), "o": np.array([1, "a"], "O")})
    assert b"joblib.numpy_pickle" not in data[:65536]
    report = scan_bytes(data, "late.joblib")
    assert report.format is FileFormat.JOBLIB
    assert report.verdict is Verdict.SAFE, report.findings


def test_a_payload_in_a_late_joblib_dump_is_still_found():
    data = _raw({"pad": _LATE, "w": np.arange(1000, dtype="f8"), "x": _Payload()})
    report = scan_bytes(data, "late.joblib")
    assert report.format is FileFormat.JOBLIB
    assert "MAM-PKL-001" in _rules(report)
    assert "MAM-PKL-011" not in _rules(report)  # the array bytes were not read as opcodes


def test_a_late_joblib_dump_is_recognised_even_when_the_policy_allows_the_wrapper():
    from mamori.scan import ScanPolicy

    data = _raw({"pad": _LATE, "w": np.arange(1000, dtype="f8")})
    allow = ScanPolicy(allowed_globals=frozenset({"joblib.numpy_pickle.NumpyArrayWrapper"}))
    report = scan_bytes(data, "late.joblib", policy=allow)
    assert report.format is FileFormat.JOBLIB
    assert report.verdict is Verdict.SAFE, report.findings


def test_a_plain_pickle_keeps_its_format_and_its_findings():
    report = scan_bytes(pickle.dumps({"pad": _LATE, "x": _Payload()}), "plain.pkl")
    assert report.format is FileFormat.PICKLE
    assert "MAM-PKL-001" in _rules(report)
