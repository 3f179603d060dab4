"""safetensors: real files are clean; every header defect the spec forbids is a finding."""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save

from mamori.findings import FileFormat, Severity, Verdict
from mamori.scan import ScanLimits, ScanPolicy, scan_bytes, scan_path
from mamori.scan.formats.interface import Probe
from mamori.scan.formats.safetensors import SafetensorsHandler


def _real() -> bytes:
    return save(
        {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.zeros(5, np.int8)},
        metadata={"format": "pt"},
    )


def _file(header: bytes | str, data: bytes = b"") -> bytes:
    raw = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(raw)) + raw + data


def _entry(dtype: str = "U8", shape: list[int] | None = None, offsets: list[int] | None = None):
    return {
        "dtype": dtype,
        "shape": [4] if shape is None else shape,
        "data_offsets": [0, 4] if offsets is None else offsets,
    }


def _rules(data: bytes, name: str = "m.safetensors") -> set[str]:
    return {f.rule_id for f in scan_bytes(data, name=name).findings}


def test_file_written_by_the_safetensors_library_is_clean():
    report = scan_bytes(_real(), name="model.safetensors")
    assert report.format == FileFormat.SAFETENSORS
    assert report.findings == ()


def test_file_with_a_bin_extension_is_detected_by_content():
    report = scan_bytes(_real(), name="pytorch_model.bin")
    assert report.format == FileFormat.SAFETENSORS
    assert report.findings == ()


def test_empty_tensor_set_is_clean():
    assert _rules(save({})) == set()


def test_space_padding_after_the_json_is_allowed():
    assert _rules(_file(json.dumps({"a": _entry()}) + "     ", b"abcd")) == set()


def test_newline_padding_is_a_low_spec_deviation():
    report = scan_bytes(_file(json.dumps({"a": _entry()}) + "\n", b"abcd"))
    assert [(f.rule_id, f.severity) for f in report.findings] == [("MAM-ST-001", Severity.LOW)]


def test_leading_whitespace_is_flagged():
    assert "MAM-ST-001" in _rules(_file(" " + json.dumps({"a": _entry()}), b"abcd"))


def test_header_longer_than_the_file_is_flagged():
    data = struct.pack("<Q", 50) + b'{"a": 1}'
    assert SafetensorsHandler().sniff(Probe(data, data, len(data), "x")) is False
    assert "MAM-GEN-004" in _rules(data)


def test_header_over_the_configured_limit_is_flagged():
    data = _file(json.dumps({"a": _entry()}), b"abcd")
    policy = ScanPolicy(limits=ScanLimits(max_header_bytes=16))
    report = scan_bytes(data, name="m.safetensors", policy=policy)
    assert {f.rule_id for f in report.findings} == {"MAM-ST-006"}


def test_invalid_utf8_header_is_flagged():
    assert "MAM-ST-001" in _rules(_file(b'{"\xff": 1}'))


def test_nan_constant_is_flagged():
    assert "MAM-ST-001" in _rules(_file('{"__metadata__": {"a": NaN}}'))


def test_garbage_after_the_json_object_is_flagged():
    assert "MAM-ST-001" in _rules(_file('{"a": {}} xx'))


def test_duplicate_tensor_name_is_flagged():
    header = '{"a": %s, "a": %s}' % (json.dumps(_entry()), json.dumps(_entry()))  # noqa: UP031
    assert "MAM-ST-007" in _rules(_file(header, b"abcd"))


def test_duplicate_field_inside_an_entry_is_flagged():
    header = '{"a": {"dtype": "U8", "dtype": "F32", "shape": [4], "data_offsets": [0, 4]}}'
    assert "MAM-ST-007" in _rules(_file(header, b"abcd"))


def test_extra_key_in_an_entry_is_flagged():
    entry = {**_entry(), "evil": 1}
    assert "MAM-ST-002" in _rules(_file(json.dumps({"a": entry}), b"abcd"))


def test_unknown_dtype_is_flagged():
    assert "MAM-ST-002" in _rules(_file(json.dumps({"a": _entry(dtype="U4")}), b"abcd"))


@pytest.mark.parametrize("dtype", ["F8_E4M3", "F8_E5M2", "F8_E8M0", "BF16", "BOOL", "C64"])
def test_every_official_dtype_is_accepted(dtype):
    bits = {"BF16": 16, "C64": 64}.get(dtype, 8)
    nbytes = 4 * bits // 8
    header = json.dumps({"a": _entry(dtype=dtype, offsets=[0, nbytes])})
    assert _rules(_file(header, b"x" * nbytes)) == set()


def test_sub_byte_dtype_must_end_on_a_byte_boundary():
    header = json.dumps({"a": _entry(dtype="F4", shape=[3], offsets=[0, 2])})
    assert "MAM-ST-002" in _rules(_file(header, b"xx"))


def test_negative_dimension_is_flagged():
    assert "MAM-ST-002" in _rules(_file(json.dumps({"a": _entry(shape=[-4])}), b"abcd"))


def test_boolean_dimension_is_flagged():
    assert "MAM-ST-002" in _rules(_file(json.dumps({"a": _entry(shape=[True])}), b"abcd"))


def test_byte_length_disagreeing_with_shape_is_flagged():
    assert "MAM-ST-002" in _rules(_file(json.dumps({"a": _entry(shape=[5])}), b"abcd"))


def test_overflowing_shape_is_flagged():
    header = json.dumps({"a": _entry(dtype="F64", shape=[1 << 62, 4])})
    assert "MAM-ST-002" in _rules(_file(header, b"abcd"))


def test_overlapping_tensors_are_flagged():
    header = json.dumps({"a": _entry(), "b": _entry(offsets=[2, 6], shape=[4])})
    assert "MAM-ST-003" in _rules(_file(header, b"abcdef"))


def test_gap_between_tensors_is_flagged():
    header = json.dumps({"a": _entry(), "b": _entry(offsets=[8, 12])})
    assert "MAM-ST-003" in _rules(_file(header, b"x" * 12))


def test_offsets_past_the_end_of_file_are_flagged():
    assert "MAM-ST-003" in _rules(_file(json.dumps({"a": _entry()}), b"ab"))


def test_trailing_data_polyglot_is_flagged():
    # A pickle appended after the tensors: invisible to safetensors, visible to other readers.
    rules = _rules(_real() + b"\x80\x04K\x01.")
    assert "MAM-ST-004" in rules


def test_metadata_with_non_string_value_is_flagged():
    header = json.dumps({"__metadata__": {"a": {"b": 1}}})
    assert "MAM-ST-005" in _rules(_file(header))


def test_metadata_that_is_not_an_object_is_flagged():
    assert "MAM-ST-005" in _rules(_file(json.dumps({"__metadata__": "x"})))


def test_lone_surrogate_key_is_flagged():
    assert "MAM-ST-001" in _rules(_file('{"\\ud800": ' + json.dumps(_entry()) + "}", b"abcd"))


def test_scan_from_disk_reads_only_the_header(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(_real())
    report = scan_path(path)
    assert report.format == FileFormat.SAFETENSORS
    assert report.findings == ()


def test_sniff_does_not_claim_json_without_the_length_prefix():
    data = b'{"a": 1}' + b" " * 100
    assert SafetensorsHandler().sniff(Probe(data, data, len(data), "x")) is False


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_random_bytes_never_crash_and_are_never_clean(data):
    report = scan_bytes(data, name="m.safetensors")
    rules = {f.rule_id for f in report.findings}
    assert "MAM-GEN-001" not in rules
    assert rules


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_files_never_crash_the_parser(data):
    raw = bytearray(_real())
    header_end = 8 + struct.unpack_from("<Q", raw)[0]
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, header_end - 1))
        raw[i] = data.draw(st.integers(0, 255))
    report = scan_bytes(bytes(raw), name="m.safetensors")
    assert "MAM-GEN-001" not in {f.rule_id for f in report.findings}


@pytest.mark.parametrize("length", [0xA188, 0x3A0308, 0x3A6408])
def test_header_lengths_that_look_like_other_formats_are_not_polyglots(length):
    # 88 a1 00.. reads as a msgpack map with a "\x00" key; 08 03 3a 00.. as an ONNX prefix.
    header = json.dumps({"a": _entry()}).encode()
    header += b" " * (length - len(header))
    report = scan_bytes(_file(header, b"abcd"), name="m.safetensors")
    assert report.format == FileFormat.SAFETENSORS
    assert report.findings == ()


def test_header_length_that_spells_a_flat_msgpack_map_is_not_a_polyglot():
    # 81 a1 41 00 .. is the msgpack map {"A": 0} followed by bytes.
    header = json.dumps({"a": _entry()}).encode()
    header += b" " * (0x41A181 - len(header))
    report = scan_bytes(_file(header, b"abcd"), name="m.safetensors")
    assert report.findings == ()


def test_zip_appended_to_tensors_is_reported_as_a_polyglot():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("payload.txt", "harmless")
    rules = _rules(_real() + buf.getvalue())
    assert {"MAM-GEN-005", "MAM-ST-004"} <= rules


def test_a_header_length_of_10_to_the_12_makes_the_verdict_unsafe():
    data = struct.pack("<Q", 10**12) + b'{"a": 1}'
    report = scan_bytes(data, "model.safetensors")
    assert report.verdict is Verdict.UNSAFE
