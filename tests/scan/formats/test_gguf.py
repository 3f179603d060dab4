"""GGUF: real files are clean; table defects and hostile chat templates are findings."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamori.findings import FileFormat, Severity
from mamori.scan import scan_bytes, scan_path

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
)
# https://github.com/abetlen/llama-cpp-python/security/advisories/GHSA-56xg-wfcc-g829
# (harmless command: `true`)
LLAMA_DRAMA = "{{ cycler.__init__.__globals__.os.popen('true').read() }}"


def _written(
    tmp_path: Path,
    template: str | None = CHATML,
    *,
    endian: gguf.GGUFEndian = gguf.GGUFEndian.LITTLE,
    extra_templates: dict[str, str] | None = None,
) -> bytes:
    path = tmp_path / "model.gguf"
    writer = gguf.GGUFWriter(path, "llama", endianess=endian)
    if template is not None:
        writer.add_string("tokenizer.chat_template", template)
    for name, text in (extra_templates or {}).items():
        writer.add_string(f"tokenizer.chat_template.{name}", text)
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "a"])
    writer.add_array("tokenizer.ggml.scores", [0.0, 0.0, 1.0])
    writer.add_uint32("llama.context_length", 2048)
    writer.add_tensor("tok_embd", np.ones((3, 32), dtype=np.float32))
    writer.add_tensor("norm", np.ones((32,), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _kv(key: str, value_type: int, payload: bytes) -> bytes:
    return _s(key) + struct.pack("<I", value_type) + payload


def _tensor(name: str, dims: list[int], ggml_type: int, offset: int) -> bytes:
    out = _s(name) + struct.pack("<I", len(dims))
    out += b"".join(struct.pack("<Q", d) for d in dims)
    return out + struct.pack("<IQ", ggml_type, offset)


def _hand(kvs: list[bytes], tensors: list[bytes], data: bytes = b"", version: int = 3) -> bytes:
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    out += b"".join(kvs) + b"".join(tensors)
    out += b"\x00" * (-len(out) % 32)
    return out + data


def _rules(data: bytes) -> set[str]:
    return {f.rule_id for f in scan_bytes(data, name="m.gguf").findings}


def test_file_written_by_gguf_py_is_clean(tmp_path):
    report = scan_bytes(_written(tmp_path), name="model.gguf")
    assert report.format == FileFormat.GGUF
    assert report.findings == ()


def test_big_endian_file_is_parsed(tmp_path):
    data = _written(tmp_path, endian=gguf.GGUFEndian.BIG)
    assert data[4:8] == b"\x00\x00\x00\x03"
    assert scan_bytes(data, name="model.gguf").findings == ()


def test_file_without_extension_is_detected_by_content(tmp_path):
    path = tmp_path / "weights"
    path.write_bytes(_written(tmp_path))
    report = scan_path(path)
    assert report.format == FileFormat.GGUF
    assert report.findings == ()


def test_llama_drama_template_cve_2024_34359_is_critical(tmp_path):
    report = scan_bytes(_written(tmp_path, LLAMA_DRAMA), name="model.gguf")
    tpl = [f for f in report.findings if f.rule_id == "MAM-TPL-001"]
    assert tpl
    assert max(f.severity for f in tpl) == Severity.CRITICAL


def test_named_chat_template_variant_is_checked_too(tmp_path):
    data = _written(tmp_path, extra_templates={"tool_use": "{{ x.__class__ }}"})
    assert "MAM-TPL-001" in _rules(data)


def test_unparseable_chat_template_fails_closed(tmp_path):
    assert "MAM-TPL-002" in _rules(_written(tmp_path, "{% if %}"))


def test_unknown_version_is_flagged():
    assert _rules(_hand([], [], version=7)) == {"MAM-GGUF-002"}


def test_version_one_layout_is_parsed():
    kv = b"\x04\x00\x00\x00name\x08\x00\x00\x00\x01\x00\x00\x00x"
    data = b"GGUF" + struct.pack("<III", 1, 0, 1) + kv
    data += b"\x00" * (-len(data) % 32)
    assert _rules(data) == set()


def test_truncated_metadata_is_flagged(tmp_path):
    data = _written(tmp_path)
    assert _rules(data[:60]) == {"MAM-GGUF-005"}  # the declared counts cannot fit
    assert "MAM-GGUF-001" in _rules(data[:200])


def test_huge_metadata_count_is_a_limit_finding():
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1 << 60)
    assert _rules(data) == {"MAM-GGUF-005"}


def test_huge_array_count_is_flagged():
    kv = _kv("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 1 << 40))
    assert "MAM-GGUF-005" in _rules(_hand([kv], []))


def test_huge_string_length_is_flagged():
    kv = _s("general.name") + struct.pack("<IQ", 8, 1 << 50)
    assert "MAM-GGUF-001" in _rules(_hand([kv], []))


def test_unknown_value_type_is_flagged():
    assert "MAM-GGUF-001" in _rules(_hand([_kv("k", 99, b"")], []))


def test_nested_arrays_are_walked():
    inner = struct.pack("<IQ", 4, 2) + b"\x01\x00\x00\x00\x02\x00\x00\x00"
    kv = _kv("k", 9, struct.pack("<IQ", 9, 1) + inner)
    assert _rules(_hand([kv], [])) == set()


def test_deeply_nested_arrays_are_a_limit_finding():
    payload = struct.pack("<IQ", 9, 1) * 20 + struct.pack("<IQ", 4, 0)
    assert "MAM-GGUF-005" in _rules(_hand([_kv("k", 9, payload)], []))


def test_invalid_utf8_key_is_flagged():
    kv = struct.pack("<Q", 2) + b"\xff\xfe" + struct.pack("<I", 4) + b"\x00" * 4
    assert "MAM-GGUF-001" in _rules(_hand([kv], []))


def test_duplicate_key_is_flagged():
    kv = _kv("k", 4, b"\x01\x00\x00\x00")
    assert "MAM-GGUF-006" in _rules(_hand([kv, kv], []))


def test_alignment_that_is_not_a_power_of_two_is_flagged():
    kv = _kv("general.alignment", 4, struct.pack("<I", 3))
    assert "MAM-GGUF-001" in _rules(_hand([kv], []))


def test_unknown_tensor_type_is_flagged():
    assert "MAM-GGUF-003" in _rules(_hand([], [_tensor("t", [4], 4, 0)], b"\x00" * 32))


def test_too_many_dimensions_are_flagged():
    assert "MAM-GGUF-003" in _rules(_hand([], [_tensor("t", [1] * 5, 0, 0)], b"\x00" * 32))


def test_tensor_past_the_end_of_file_is_flagged():
    assert "MAM-GGUF-003" in _rules(_hand([], [_tensor("t", [64], 0, 0)], b"\x00" * 32))


def test_misaligned_tensor_offset_is_flagged():
    data = _hand([], [_tensor("t", [4], 0, 4)], b"\x00" * 32)
    assert "MAM-GGUF-003" in _rules(data)


def test_overlapping_tensors_are_flagged():
    tensors = [_tensor("a", [16], 0, 0), _tensor("b", [16], 0, 32)]
    assert "MAM-GGUF-003" in _rules(_hand([], tensors, b"\x00" * 64))


def test_duplicate_tensor_name_is_flagged():
    tensors = [_tensor("a", [8], 0, 0), _tensor("a", [8], 0, 32)]
    assert "MAM-GGUF-006" in _rules(_hand([], tensors, b"\x00" * 64))


def test_trailing_data_after_tensors_is_flagged(tmp_path):
    assert "MAM-GGUF-004" in _rules(_written(tmp_path) + b"\x00" * 64 + b"PK\x03\x04")


def test_gap_between_tensors_is_flagged():
    tensors = [_tensor("a", [8], 0, 0), _tensor("b", [8], 0, 128)]
    assert "MAM-GGUF-004" in _rules(_hand([], tensors, b"\x00" * 160))


def test_quantised_row_not_a_multiple_of_the_block_is_flagged():
    assert "MAM-GGUF-003" in _rules(_hand([], [_tensor("q", [31], 2, 0)], b"\x00" * 32))


def test_overflowing_dims_are_flagged():
    tensors = [_tensor("t", [1 << 40, 1 << 40], 0, 0)]
    assert "MAM-GGUF-003" in _rules(_hand([], tensors, b"\x00" * 32))


@pytest.mark.parametrize("magic", [b"GGUF\x00\x00\x00\x00", b"GGU"])
def test_magic_without_a_version_is_not_claimed(magic):
    assert scan_bytes(magic, name="m.gguf").format != FileFormat.GGUF


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_after_the_magic_never_crash_and_are_never_clean(tail):
    report = scan_bytes(b"GGUF\x03\x00\x00\x00" + tail, name="m.gguf")
    rules = {f.rule_id for f in report.findings}
    assert "MAM-GEN-001" not in rules
    assert rules


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_files_never_crash_the_parser(data):
    raw = bytearray(_MUTATION_BASE)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(8, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    report = scan_bytes(bytes(raw), name="m.gguf")
    assert "MAM-GEN-001" not in {f.rule_id for f in report.findings}


def _base() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return _written(Path(tmp))


_MUTATION_BASE = _base()


def test_the_kept_string_limit_is_four_times_the_template_limit():
    """gguf spells the limit as a literal (so jinja2 loads lazily); it must track jinja_check."""
    from mamori.scan._internal.jinja_check import MAX_TEMPLATE_CHARS
    from mamori.scan.formats import gguf

    assert gguf._MAX_STRING_KEPT == 4 * MAX_TEMPLATE_CHARS
