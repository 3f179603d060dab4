"""Serialized ONNX TensorProto files (ONNX test data, as model-zoo repositories ship it)."""

from __future__ import annotations

import numpy as np
import onnx
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from mamori.findings import FileFormat, Verdict
from mamori.scan import scan_bytes
from mamori.scan.formats.interface import Probe
from mamori.scan.formats.onnx_tensor import OnnxTensorHandler


def _rules(report) -> set[str]:
    return {f.rule_id for f in report.findings}


def test_an_input_tensor_written_by_onnx_is_recognised_and_safe():
    data = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "x")
    report = scan_bytes(data.SerializeToString(), "input_0.pb")
    assert report.format is FileFormat.ONNX_TENSOR
    assert report.verdict is Verdict.SAFE, report.findings


def test_a_tensor_without_name_or_dims_is_recognised():
    data = numpy_helper.from_array(np.array(3.0, dtype=np.float64)).SerializeToString()
    assert scan_bytes(data, "output_0.pb").format is FileFormat.ONNX_TENSOR


def test_raw_data_shorter_than_its_dims_is_reported():
    tensor = numpy_helper.from_array(np.zeros((4, 4), dtype=np.float32))
    tensor.raw_data = tensor.raw_data[:8]
    assert "MAM-ONNX-006" in _rules(scan_bytes(tensor.SerializeToString(), "input_0.pb"))


def test_external_tensor_data_is_reported():
    tensor = onnx.TensorProto(name="x", data_type=onnx.TensorProto.FLOAT, dims=[2])
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="weights.bin")
    report = scan_bytes(tensor.SerializeToString(), "input_0.pb")
    assert "MAM-ONNX-003" in _rules(report)


def test_an_onnx_model_is_not_taken_for_a_tensor():
    graph = onnx.helper.make_graph([], "g", [], [])
    model = onnx.helper.make_model(graph).SerializeToString()
    probe = Probe(model, model, len(model), "m.onnx")
    assert OnnxTensorHandler().sniff(probe) is False


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=256))
def test_sniff_and_scan_never_raise_on_random_bytes(data):
    if OnnxTensorHandler().sniff(Probe(data, data, len(data), "x.pb")):
        scan_bytes(data, "x.pb")
