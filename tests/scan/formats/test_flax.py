"""Flax msgpack checkpoints: flax-shaped files are clean; foreign ext types are findings.

Samples are built the way ``flax.serialization.to_bytes`` builds them (flax pulls in JAX, which
this environment does not install): ext 1 = ndarray, 2 = complex, 3 = numpy scalar, each a
nested msgpack of ``(shape, dtype.name, bytes)`` or ``(real, imag)``.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamori.findings import FileFormat
from mamori.scan import scan_bytes, scan_path
from mamori.scan.formats.flax import FlaxMsgpackHandler
from mamori.scan.formats.interface import Probe


def _array_bytes(arr: np.ndarray) -> bytes:
    return msgpack.packb((arr.shape, arr.dtype.name, arr.tobytes("C")), use_bin_type=True)


def _flax_default(x: Any) -> Any:
    # Mirrors flax.serialization._msgpack_ext_pack.
    if isinstance(x, np.ndarray):
        return msgpack.ExtType(1, _array_bytes(x))
    if isinstance(x, np.generic):
        return msgpack.ExtType(3, _array_bytes(np.asarray(x)))
    if isinstance(x, complex):
        return msgpack.ExtType(2, msgpack.packb((x.real, x.imag)))
    raise TypeError(type(x))


def _to_bytes(tree: dict[str, Any]) -> bytes:
    return msgpack.packb(tree, default=_flax_default, strict_types=True)


def _state() -> dict[str, Any]:
    return {
        "params": {
            "Dense_0": {
                "kernel": np.arange(12, dtype=np.float32).reshape(3, 4),
                "bias": np.zeros(4, np.float32),
            },
            "Embed_0": {"embedding": np.ones((300, 64), np.float16)},
        },
        "opt_state": {"count": np.int32(7), "scale": 1 + 2j},
        "step": 100,
        "name": "run-1",
        # flax._chunk layout for arrays above MAX_CHUNK_SIZE (here on a tiny array).
        "big": {
            "__msgpack_chunked_array__": True,
            "shape": {"0": 4},
            "chunks": {"0": np.zeros(2, np.int64), "1": np.zeros(2, np.int64)},
        },
    }


def _rules(data: bytes) -> set[str]:
    return {f.rule_id for f in scan_bytes(data, name="flax_model.msgpack").findings}


def test_flax_shaped_checkpoint_is_clean():
    report = scan_bytes(_to_bytes(_state()), name="flax_model.msgpack")
    assert report.format == FileFormat.FLAX_MSGPACK
    assert report.findings == ()


def test_checkpoint_without_extension_is_detected_by_content(tmp_path):
    path = tmp_path / "checkpoint_100"
    path.write_bytes(_to_bytes(_state()))
    report = scan_path(path)
    assert report.format == FileFormat.FLAX_MSGPACK
    assert report.findings == ()


def test_large_checkpoint_uses_32_bit_containers_and_is_clean():
    tree = {f"layer_{i}": np.zeros(3, np.float32) for i in range(70_000)}
    assert _rules(_to_bytes(tree)) == set()


def test_foreign_extension_type_is_flagged():
    data = msgpack.packb({"params": msgpack.ExtType(42, b"os.system('true')")})
    assert _rules(data) == {"MAM-FLAX-002"}


def test_negative_extension_type_is_flagged():
    # -1 is msgpack's timestamp; flax never writes it.
    data = msgpack.packb({"t": msgpack.Timestamp(1)})
    assert _rules(data) == {"MAM-FLAX-002"}


def test_object_dtype_array_is_flagged():
    payload = msgpack.packb(((2,), "object", b"\x00" * 16), use_bin_type=True)
    assert _rules(msgpack.packb({"a": msgpack.ExtType(1, payload)})) == {"MAM-FLAX-003"}


def test_array_byte_length_mismatch_is_flagged():
    payload = msgpack.packb(((3, 4), "float32", b"\x00" * 8), use_bin_type=True)
    assert _rules(msgpack.packb({"a": msgpack.ExtType(1, payload)})) == {"MAM-FLAX-003"}


def test_array_payload_that_is_not_a_triple_is_flagged():
    payload = msgpack.packb({"shape": 1})
    assert _rules(msgpack.packb({"a": msgpack.ExtType(1, payload)})) == {"MAM-FLAX-003"}


def test_complex_payload_that_is_not_a_pair_is_flagged():
    payload = msgpack.packb((1.0, 2.0, 3.0))
    assert _rules(msgpack.packb({"a": msgpack.ExtType(2, payload)})) == {"MAM-FLAX-003"}


def test_trailing_data_after_the_root_map_is_flagged():
    assert "MAM-FLAX-001" in _rules(_to_bytes(_state()) + b"\x80\x04K\x01.")


def test_truncated_checkpoint_is_flagged():
    data = _to_bytes(_state())
    assert "MAM-FLAX-001" in _rules(data[: len(data) // 2])


def test_non_string_key_is_flagged():
    data = msgpack.packb({"a": {1: 2}})
    assert "MAM-FLAX-001" in _rules(data)


def test_reserved_type_byte_is_flagged():
    assert "MAM-FLAX-001" in _rules(b"\x81\xa1a\xc1")


def test_huge_declared_container_is_a_limit_finding():
    assert "MAM-FLAX-004" in _rules(b"\x81\xa1a\xdd\xff\xff\xff\xff")


def test_deep_nesting_is_a_limit_finding():
    data = b"\x81\xa1a" * 400 + b"\xc0"
    assert "MAM-FLAX-004" in _rules(data)


def test_invalid_utf8_key_after_the_first_is_flagged():
    assert "MAM-FLAX-001" in _rules(b"\x82\xa1a\xc0\xa2\xff\xfe\xc0")


@pytest.mark.parametrize(
    "data",
    [b"\x80\x04\x95", b"\x81\x05\x07" + b"\x00" * 200, b"\x93\x01\x02\x03", b"\x81\xa2\xff\xfe"],
    ids=["pickle-proto4", "int-key", "root-array", "non-utf8-first-key"],
)
def test_sniff_rejects_non_flax_bytes(data):
    assert FlaxMsgpackHandler().sniff(Probe(data, data, len(data), "x")) is False


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=300))
def test_random_bytes_behind_a_map_header_never_crash_and_are_never_clean(tail):
    report = scan_bytes(b"\x82\xa1a" + tail, name="flax_model.msgpack")
    rules = {f.rule_id for f in report.findings}
    assert "MAM-GEN-001" not in rules
    # A random tail can spell a valid two-entry map only by accident and then nothing else.
    assert rules or report.format == FileFormat.FLAX_MSGPACK


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_checkpoints_never_crash_the_walker(data):
    raw = bytearray(_BASE)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    report = scan_bytes(bytes(raw), name="flax_model.msgpack")
    assert "MAM-GEN-001" not in {f.rule_id for f in report.findings}


_BASE = _to_bytes(_state())
