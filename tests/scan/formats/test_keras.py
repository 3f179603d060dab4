"""Keras v3 ``.keras`` archives and the shared Keras config walker.

Benign samples are built with real Keras (torch backend); hostile ones are hand-written
configs whose payloads are harmless names. Nothing is ever loaded.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import warnings
import zipfile
from pathlib import Path

import h5py
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamori.findings import FileFormat, Severity, Verdict
from mamori.scan import scan_bytes, scan_path
from mamori.scan._internal.keras_config import (
    KerasConfigError,
    check_keras_config,
    load_json_strict,
)
from mamori.scan.formats.interface import Probe
from mamori.scan.formats.keras import KerasV3Handler

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")


def _weights_h5() -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_group("layers")
        f.create_group("vars")
    return buf.getvalue()


def _keras_zip(
    config: object,
    *,
    extra: dict[str, bytes] | None = None,
    raw: bytes | None = None,
    weights: bool = False,
) -> bytes:
    # The weights member is optional here: each HDF5 file costs a child process (hdf5.py).
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        z.writestr("config.json", raw if raw is not None else json.dumps(config))
        if weights:
            z.writestr("model.weights.h5", _weights_h5())
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def _sequential(*layers: dict[str, object]) -> dict[str, object]:
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "s", "layers": list(layers)},
        "registered_name": None,
    }


def _rules(report) -> set[str]:
    return {f.rule_id for f in report.findings}


def _above_info(report) -> list[str]:
    return [f.rule_id for f in report.findings if f.severity > Severity.INFO]


@pytest.fixture(scope="module")
def real_models(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("keras")
    with warnings.catch_warnings():
        # Keras 3.15 on numpy 2 warns about __array__(copy=) while saving optimizer state;
        # that is the library building our sample, not the code under test.
        warnings.simplefilter("ignore", DeprecationWarning)
        _build(out)
    return {p.stem: p for p in out.iterdir()}


def _build(out: Path) -> None:
    inp = keras.Input((4,))
    x = keras.layers.Dense(
        3,
        activation="relu",
        kernel_initializer=keras.initializers.HeNormal(seed=1),
        kernel_regularizer=keras.regularizers.L2(0.01),
        kernel_constraint=keras.constraints.MaxNorm(2.0),
    )(inp)
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    functional = keras.Model(inp, inner(x))
    functional.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", metrics=["mae"])
    functional.save(out / "benign.keras")

    seq = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    seq.save(out / "seq.keras")

    lam = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda v: v * 2)])
    lam.save(out / "lambda.keras")

    nested_inner = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda v: v + 1)])
    nested = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3), nested_inner])
    nested.save(out / "nested_lambda.keras")


def test_a_functional_keras_model_with_nested_model_and_compile_config_is_clean(real_models):
    report = scan_path(real_models["benign"])
    assert report.format is FileFormat.KERAS_V3
    assert _above_info(report) == []
    assert report.verdict is Verdict.SAFE


def test_the_weights_member_is_scanned_as_hdf5(real_models):
    report = scan_path(real_models["seq"])
    formats = {m.path[-1]: m.format for m in report.members}
    assert formats["model.weights.h5"] is FileFormat.HDF5
    assert _above_info(report) == []


def test_a_lambda_layer_saved_by_keras_is_critical(real_models):
    report = scan_path(real_models["lambda"])
    hits = [f for f in report.findings if f.rule_id == "MAM-KERAS-001"]
    assert hits
    assert hits[0].severity is Severity.CRITICAL
    assert hits[0].location.member == ("config.json",)


def test_a_lambda_inside_a_nested_model_is_found(real_models):
    assert "MAM-KERAS-001" in _rules(scan_path(real_models["nested_lambda"]))


def test_cve_2025_1550_module_os_function_is_critical():
    layer = {
        "module": "keras.layers",
        "class_name": "Dense",
        "config": {
            "units": 1,
            "activation": {
                "module": "os",
                "class_name": "function",
                "config": "system",
                "registered_name": "system",
            },
        },
    }
    report = scan_bytes(_keras_zip(_sequential(layer)), "m.keras")
    hits = [f for f in report.findings if f.rule_id == "MAM-KERAS-002"]
    assert hits
    assert hits[0].severity is Severity.CRITICAL
    assert "os.system" in (hits[0].evidence or "")


def test_cve_2025_8747_keras_utils_get_file_is_critical():
    layer = {
        "module": "keras.layers",
        "class_name": "Lambda",
        "config": {
            "function": {
                "module": "keras.utils",
                "class_name": "function",
                "config": "get_file",
                "registered_name": "get_file",
            },
            "arguments": {"origin": "https://example.invalid/x", "fname": "/tmp/x"},
        },
    }
    report = scan_bytes(_keras_zip(_sequential(layer)), "m.keras")
    evidence = [f.evidence for f in report.findings if f.rule_id == "MAM-KERAS-002"]
    assert "keras.utils.get_file" in evidence


def test_cve_2025_9906_enable_unsafe_deserialization_is_critical():
    layer = {
        "module": "keras.src.saving.serialization_lib",
        "class_name": "function",
        "config": "enable_unsafe_deserialization",
        "registered_name": None,
    }
    report = scan_bytes(_keras_zip(_sequential(layer)), "m.keras")
    assert "MAM-KERAS-002" in _rules(report)


def test_builtins_exec_as_a_function_is_critical_but_builtins_relu_is_not():
    evil = {
        "module": "builtins",
        "class_name": "function",
        "config": "exec",
        "registered_name": None,
    }
    fine = {
        "module": "builtins",
        "class_name": "function",
        "config": "relu",
        "registered_name": None,
    }
    assert [i.rule_id for i in check_keras_config(evil)] == ["MAM-KERAS-002"]
    assert check_keras_config(fine) == []


def test_a_custom_layer_from_a_user_module_is_medium():
    layer = {
        "module": "my_project.layers",
        "class_name": "FancyDense",
        "config": {"units": 2},
        "registered_name": "my_project>FancyDense",
    }
    report = scan_bytes(_keras_zip(_sequential(layer)), "m.keras")
    hits = [f for f in report.findings if f.rule_id == "MAM-KERAS-003"]
    assert hits
    assert hits[0].severity is Severity.MEDIUM


def test_tfsmlayer_loading_an_external_savedmodel_is_reported():
    layer = {
        "module": "keras.layers",
        "class_name": "TFSMLayer",
        "config": {"filepath": "/srv/other_model", "call_endpoint": "serve"},
    }
    report = scan_bytes(_keras_zip(_sequential(layer)), "m.keras")
    hits = [f for f in report.findings if f.rule_id == "MAM-KERAS-004"]
    assert hits
    assert hits[0].evidence == "/srv/other_model"


def test_keras2_lambda_with_marshalled_bytecode_shows_names_found_in_it():
    blob = base64.b64encode(b"\xe3\x00\x00\x00system\x00os\x00__import__").decode()
    layer = {
        "class_name": "Lambda",
        "config": {"function": [blob, None, None], "function_type": "lambda"},
    }
    issues = check_keras_config({"class_name": "Sequential", "config": {"layers": [layer]}})
    assert [i.rule_id for i in issues] == ["MAM-KERAS-001"]
    assert "system" in (issues[0].evidence or "")


def test_keras2_lambda_naming_os_system_through_its_module_is_critical():
    layer = {
        "class_name": "Lambda",
        "config": {"function": "system", "function_type": "function", "module": "os"},
    }
    assert [i.rule_id for i in check_keras_config(layer)] == ["MAM-KERAS-002"]


def test_a_lambda_given_as_python_source_is_critical():
    layer = {
        "class_name": "Lambda",
        "config": {"function": "lambda x: __import__('os').system('true')"},
    }
    assert [i.rule_id for i in check_keras_config(layer)] == ["MAM-KERAS-001"]


def test_duplicate_keys_in_config_json_are_refused():
    raw = b'{"class_name": "Sequential", "class_name": "Functional", "config": {}}'
    report = scan_bytes(_keras_zip(None, raw=raw), "m.keras")
    assert "MAM-KERAS-005" in _rules(report)


def test_config_json_that_is_not_json_is_a_finding():
    report = scan_bytes(_keras_zip(None, raw=b"\xff\xfenot json"), "m.keras")
    assert "MAM-KERAS-005" in _rules(report)


def test_config_nested_beyond_the_parser_recursion_is_a_finding_not_a_crash():
    raw = b"[" * 200_000 + b"]" * 200_000
    report = scan_bytes(_keras_zip(None, raw=raw), "m.keras")
    assert "MAM-KERAS-005" in _rules(report)
    assert "MAM-GEN-001" not in _rules(report)


def test_an_unexpected_member_is_reported_and_scanned_by_content():
    report = scan_bytes(_keras_zip(_sequential(), extra={"payload.bin": b"MZ\x90\x00"}), "m.keras")
    hits = [f for f in report.findings if f.rule_id == "MAM-KERAS-006"]
    assert hits
    assert hits[0].location.member == ("payload.bin",)
    assert any(m.path[-1] == "payload.bin" for m in report.members)


def test_assets_members_are_expected():
    report = scan_bytes(_keras_zip(_sequential(), extra={"assets/vocab.txt": b"a\nb\n"}), "m.keras")
    assert "MAM-KERAS-006" not in _rules(report)


def test_sniff_needs_config_json_and_only_members_keras_writes_unless_keras_members_are_there():
    handler = KerasV3Handler()
    data = _keras_zip(_sequential(), weights=True)
    assert handler.sniff(Probe(head=data[:65536], tail=data[-65536:], size=len(data), name=""))

    def probe(members: dict[str, str]) -> Probe:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for name, text in members.items():
                z.writestr(name, text)
        raw = buf.getvalue()
        return Probe(head=raw, tail=raw, size=len(raw), name="")

    # keras.saving.load_model needs nothing but config.json in a .keras zip.
    assert handler.sniff(probe({"config.json": "{}"}))
    assert not handler.sniff(probe({"config.json": "{}", "README.md": "x"}))
    assert not handler.sniff(probe({"metadata.json": "{}"}))


@given(st.binary(max_size=512))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_config_bytes_give_findings_never_exceptions(raw):
    report = scan_bytes(_keras_zip(None, raw=raw), "m.keras")
    assert report.format is FileFormat.KERAS_V3
    assert "MAM-GEN-001" not in _rules(report)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["class_name", "module", "config", "registered_name", "function", "x"]),
            inner,
            max_size=5,
        )
    ),
    max_leaves=30,
)


@given(_json)
@settings(max_examples=300, deadline=None)
def test_the_walker_accepts_any_json_value(value):
    for issue in check_keras_config(value):
        assert issue.rule_id.startswith("MAM-KERAS-")


@given(st.binary(max_size=256))
@settings(max_examples=200, deadline=None)
def test_strict_json_raises_only_its_own_error(raw):
    with contextlib.suppress(KerasConfigError):
        load_json_strict(raw)


# --- Keras by content outside the happy path (issue 11) -------------------------------------

_LAMBDA = {
    "module": "keras.layers",
    "class_name": "Lambda",
    "config": {
        "name": "l",
        "function": {
            "class_name": "__lambda__",
            "config": {"code": base64.b64encode(b"\xe3" + b"\0" * 40).decode(), "defaults": None},
        },
    },
    "registered_name": None,
}


def _only_config_zip(config: object) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("config.json", json.dumps(config))
    return buf.getvalue()


def test_a_zip_holding_only_config_json_is_a_keras_archive():
    # keras.saving.load_model rebuilds the model from config.json before it looks for weights.
    report = scan_bytes(_only_config_zip(_sequential(_LAMBDA)), "model.keras")
    assert report.format is FileFormat.KERAS_V3
    assert "MAM-KERAS-001" in _rules(report)
    assert report.verdict is Verdict.UNSAFE


def test_a_zip_holding_config_json_and_foreign_files_stays_a_plain_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("config.json", json.dumps({"model_type": "bert"}))
        z.writestr("README.md", "hello")
    assert scan_bytes(buf.getvalue(), "repo.zip").format is FileFormat.ZIP


def test_a_keras_model_folder_gets_the_keras_checks(tmp_path: Path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_sequential(_LAMBDA), indent=2))
    report = scan_path(folder)
    assert "MAM-KERAS-001" in _rules(report)
    assert report.verdict is Verdict.UNSAFE


def test_a_benign_keras_model_folder_is_safe(tmp_path: Path):
    folder = tmp_path / "model"
    folder.mkdir()
    dense = {"module": "keras.layers", "class_name": "Dense", "config": {"units": 2}}
    (folder / "config.json").write_text(json.dumps(_sequential(dense), indent=2))
    assert scan_path(folder).verdict is Verdict.SAFE
