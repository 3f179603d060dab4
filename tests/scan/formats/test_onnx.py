"""ONNX: real models are clean; escaping external data, custom ops and bad tensors are not."""

from __future__ import annotations

import io
import os

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from mamori.findings import FileFormat, Severity
from mamori.scan import ScanLimits, scan_bytes, scan_path
from mamori.scan._internal.onnx_wire import strip_model
from mamori.scan._internal.source import BytesSource
from mamori.scan.formats.interface import Probe
from mamori.scan.formats.onnx import OnnxHandler


def _graph(nodes=None, initializers=None, name="g") -> onnx.GraphProto:
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 64])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 64])
    if initializers is None:
        initializers = [numpy_helper.from_array(np.ones((64, 64), np.float32), "W")]
    if nodes is None:
        nodes = [helper.make_node("MatMul", ["X", "W"], ["Y"])]
    return helper.make_graph(nodes, name, [x], [y], initializers)


def _model(graph: onnx.GraphProto | None = None, **kw) -> onnx.ModelProto:
    return helper.make_model(graph or _graph(), **kw)


def _bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()


def _rules(data: bytes, *, at_least: Severity = Severity.INFO) -> set[str]:
    report = scan_bytes(data, name="model.onnx")
    return {f.rule_id for f in report.findings if f.severity >= at_least}


def _external(model: onnx.ModelProto, location: str) -> onnx.ModelProto:
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16384")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return model


def test_model_built_with_onnx_helper_is_clean():
    report = scan_bytes(_bytes(_model()), name="model.onnx")
    assert report.format == FileFormat.ONNX
    assert report.findings == ()


def test_model_named_bin_is_detected_by_content():
    assert scan_bytes(_bytes(_model()), name="model.bin").format == FileFormat.ONNX


def test_model_with_if_subgraphs_is_clean():
    then_g = _graph(name="then")
    else_g = _graph(
        nodes=[helper.make_node("Identity", ["X"], ["Y"])], initializers=[], name="else"
    )
    node = helper.make_node("If", ["C"], ["Y"], then_branch=then_g, else_branch=else_g)
    assert _rules(_bytes(_model(_graph(nodes=[node])))) == set()


def test_external_data_saved_by_onnx_is_clean(tmp_path):
    model = _model()
    onnx.save_model(
        model,
        tmp_path / "model.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    report = scan_path(tmp_path / "model.onnx")
    assert report.format == FileFormat.ONNX
    assert report.findings == ()
    directory = scan_path(tmp_path)
    assert not [f for f in directory.findings if f.rule_id.startswith("MAM-ONNX")]


def test_external_data_scanned_from_bytes_is_outside_the_artifact():
    assert _rules(_bytes(_external(_model(), "weights.bin"))) == {"MAM-ONNX-003"}


@pytest.mark.parametrize(
    "location",
    [
        "../../../etc/passwd",
        "/etc/passwd",
        "C:\\Windows\\win.ini",
        "..\\secret",
        "a\x00b",
        "sub/../../x",
    ],
)
def test_external_data_traversal_cve_2024_27318_is_flagged(location):
    # https://github.com/advisories/GHSA-h9m4-vq6h-9rxw (onnx external data path traversal)
    assert "MAM-ONNX-002" in _rules(_bytes(_external(_model(), location)))


def test_external_data_through_a_symlink_out_of_the_directory_is_flagged(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"\x00" * 16384)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    os.symlink(outside / "secret", model_dir / "weights.bin")
    (model_dir / "model.onnx").write_bytes(_bytes(_external(_model(), "weights.bin")))
    report = scan_path(model_dir / "model.onnx")
    assert "MAM-ONNX-002" in {f.rule_id for f in report.findings}


def test_custom_operator_domain_is_medium():
    node = helper.make_node("Evil", ["X", "W"], ["Y"], domain="com.attacker")
    model = _model(
        _graph(nodes=[node]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.attacker", 1)],
    )
    assert _rules(_bytes(model), at_least=Severity.MEDIUM) == {"MAM-ONNX-004"}


def test_onnx_runtime_contrib_domain_is_informational():
    node = helper.make_node("FusedMatMul", ["X", "W"], ["Y"], domain="com.microsoft")
    model = _model(
        _graph(nodes=[node]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
    )
    assert _rules(_bytes(model)) == {"MAM-ONNX-005"}
    assert _rules(_bytes(model), at_least=Severity.MEDIUM) == set()


def test_model_local_function_is_not_a_custom_operator():
    fn = helper.make_function(
        "local.fns",
        "Double",
        ["a"],
        ["b"],
        [helper.make_node("Add", ["a", "a"], ["b"])],
        [helper.make_opsetid("", 17)],
    )
    node = helper.make_node("Double", ["X"], ["Y"], domain="local.fns")
    model = _model(
        _graph(nodes=[node], initializers=[]),
        functions=[fn],
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local.fns", 1)],
    )
    assert _rules(_bytes(model)) == set()


def test_custom_operator_inside_a_subgraph_is_found():
    inner = _graph(nodes=[helper.make_node("Evil", ["X"], ["Y"], domain="x.y")], initializers=[])
    node = helper.make_node("If", ["C"], ["Y"], then_branch=inner, else_branch=inner)
    assert "MAM-ONNX-004" in _rules(_bytes(_model(_graph(nodes=[node]))))


def test_raw_data_shorter_than_dims_is_flagged():
    model = _model()
    model.graph.initializer[0].raw_data = b"\x00" * 1000
    assert _rules(_bytes(model)) == {"MAM-ONNX-006"}


def test_small_raw_data_mismatch_is_flagged_too():
    tensor = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[4, 4], raw_data=b"\0" * 12)
    assert "MAM-ONNX-006" in _rules(_bytes(_model(_graph(initializers=[tensor]))))


def test_negative_dimension_is_flagged():
    model = _model()
    model.graph.initializer[0].dims[0] = -1
    assert "MAM-ONNX-006" in _rules(_bytes(model))


def test_absurd_element_count_is_flagged():
    model = _model()
    model.graph.initializer[0].dims[:] = [1 << 40, 1 << 40]
    assert "MAM-ONNX-006" in _rules(_bytes(model))


def test_unknown_data_type_is_flagged():
    model = _model()
    model.graph.initializer[0].data_type = 99
    assert "MAM-ONNX-006" in _rules(_bytes(model))


def test_external_length_disagreeing_with_dims_is_flagged():
    model = _external(_model(), "weights.bin")
    model.graph.initializer[0].external_data[2].value = "12"
    assert "MAM-ONNX-006" in _rules(_bytes(model))


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def test_deeply_nested_subgraphs_are_a_limit_finding():
    # Built on the wire: the protobuf runtime itself refuses to build messages this deep.
    graph = b""
    for _ in range(40):  # Graph.node(1) -> Node.attribute(5) -> Attribute.g(6) -> Graph
        graph = _len_field(1, _len_field(5, _len_field(6, graph)))
    data = b"\x08\x08" + _len_field(7, graph) + _len_field(8, b"\x10\x11")
    assert "MAM-ONNX-008" in _rules(data)


def test_nesting_within_the_limit_is_walked():
    graph = b""
    for _ in range(20):
        graph = _len_field(1, _len_field(5, _len_field(6, graph)))
    data = b"\x08\x08" + _len_field(7, graph) + _len_field(8, b"\x10\x11")
    assert "MAM-ONNX-008" not in _rules(data)


def test_model_without_opset_import_is_flagged():
    model = _model()
    del model.opset_import[:]
    assert "MAM-ONNX-001" in _rules(_bytes(model))


def test_empty_graph_is_not_claimed_as_onnx():
    data = b"\x08\x07\x3a\x00"
    assert OnnxHandler().sniff(Probe(data, data, len(data), "x")) is False


def test_truncated_model_is_flagged():
    data = _bytes(_model())
    assert "MAM-ONNX-001" in _rules(data[: len(data) - 100])


def test_stripped_model_keeps_raw_data_lengths():
    data = _bytes(_model())
    stripped = strip_model(io.BytesIO(data), len(data), max_kept=1 << 20, max_depth=64)
    assert len(stripped.data) < 1000
    parsed = onnx.ModelProto.FromString(stripped.data)
    assert stripped.raw_length(parsed.graph.initializer[0].raw_data) == 64 * 64 * 4


def test_sniff_does_not_claim_a_tensorflow_saved_model_prefix():
    # saved_model.pb: field 1 varint (schema version) then field 2 meta_graphs.
    data = b"\x08\x01\x12\x05\x0a\x03abc"
    assert OnnxHandler().sniff(Probe(data, data, len(data), "saved_model.pb")) is False


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_protobuf_like_bytes_never_crash_and_are_never_clean(tail):
    report = scan_bytes(b"\x08\x07\x3a" + tail, name="model.onnx")
    rules = {f.rule_id for f in report.findings}
    assert "MAM-GEN-001" not in rules
    assert rules


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_models_never_crash_the_parser(data):
    raw = bytearray(_BASE)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    report = scan_bytes(bytes(raw), name="model.onnx")
    assert "MAM-GEN-001" not in {f.rule_id for f in report.findings}


_BASE = _bytes(
    _model(_graph(initializers=[numpy_helper.from_array(np.ones((4, 4), np.float32), "W")]))
)


def test_external_data_through_a_symlink_loop_is_flagged(tmp_path):
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    (tmp_path / "model.onnx").write_bytes(_bytes(_external(_model(), "loop")))
    report = scan_path(tmp_path / "model.onnx")
    assert "MAM-ONNX-002" in {f.rule_id for f in report.findings}


def test_external_data_in_a_subdirectory_is_clean(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "w.bin").write_bytes(b"\x00" * 16384)
    (tmp_path / "model.onnx").write_bytes(_bytes(_external(_model(), "data/w.bin")))
    assert scan_path(tmp_path / "model.onnx").findings == ()


class _Recorder:
    """The few ScanContext services the ONNX handler uses, recording reported rule ids."""

    def __init__(self) -> None:
        self.limits = ScanLimits()
        self.rules: list[str] = []

    def report(self, rule_id, message, **kw):
        self.rules.append(rule_id)

    def check_deadline(self):
        pass


class _Huge(BytesSource):
    """A small model that claims to be larger than protobuf's 2 GiB limit."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.size = 1 << 31


def test_model_over_the_protobuf_limit_is_flagged():
    ctx = _Recorder()
    OnnxHandler().scan(_Huge(_bytes(_model())), ctx)  # type: ignore[arg-type]  # a recorder, not a full ScanContext
    assert "MAM-ONNX-007" in ctx.rules


@pytest.mark.parametrize(
    ("dtype", "dims", "values"),
    [
        (TensorProto.FLOAT, [4, 4], [0.5] * 16),
        (TensorProto.INT64, [3], [1, 2, 3]),
        (TensorProto.DOUBLE, [2], [1.0, 2.0]),
        (TensorProto.COMPLEX64, [3], [1 + 2j, 3 + 4j, 5 + 6j]),
        (TensorProto.INT4, [5], [1, -2, 3, -4, 5]),
        (TensorProto.UINT32, [2], [7, 8]),
        (TensorProto.STRING, [2], [b"a", b"b"]),
        (TensorProto.BOOL, [2], [True, False]),
    ],
)
def test_typed_values_written_by_onnx_helper_are_clean(dtype, dims, values):
    tensor = helper.make_tensor("W", dtype, dims, values)
    assert not tensor.HasField("raw_data")
    assert "MAM-ONNX-006" not in _rules(_bytes(_model(_graph(initializers=[tensor]))))


def test_typed_values_fewer_than_dims_are_flagged():
    tensor = helper.make_tensor("W", TensorProto.FLOAT, [4, 4], [0.5] * 16)
    del tensor.float_data[-1]
    assert "MAM-ONNX-006" in _rules(_bytes(_model(_graph(initializers=[tensor]))))


def test_typed_values_in_the_wrong_field_are_flagged():
    tensor = helper.make_tensor("W", TensorProto.INT64, [2], [1, 2])
    tensor.float_data.extend([1.0, 2.0])
    tensor.ClearField("int64_data")
    assert "MAM-ONNX-006" in _rules(_bytes(_model(_graph(initializers=[tensor]))))


def test_raw_data_and_typed_values_together_are_flagged():
    tensor = helper.make_tensor("W", TensorProto.FLOAT, [2], [1.0, 2.0])
    tensor.raw_data = np.ones(2, np.float32).tobytes()
    assert "MAM-ONNX-006" in _rules(_bytes(_model(_graph(initializers=[tensor]))))
