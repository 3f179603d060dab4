"""HDF5 files and Keras HDF5 models: configs, links, external storage, user blocks."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamori.findings import FileFormat, Severity, Verdict
from mamori.scan import scan_bytes, scan_path
from mamori.scan.formats.hdf5 import HDF5_MAGIC, superblock_offset

os.environ.setdefault("KERAS_BACKEND", "torch")


def _h5(build, **kwargs) -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w", **kwargs) as f:
        build(f)
    return buf.getvalue()


def _rules(report) -> set[str]:
    return {f.rule_id for f in report.findings}


def _keras_config(*layers: dict[str, object]) -> str:
    return json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": list(layers)}})


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory) -> dict[str, Path]:
    keras = pytest.importorskip("keras")
    out = tmp_path_factory.mktemp("h5")
    with warnings.catch_warnings():
        # Keras warns about the legacy format and numpy 2 while *building* the samples.
        warnings.simplefilter("ignore")
        benign = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="relu")])
        benign.compile(optimizer="adam", loss="mse")
        benign.save(out / "benign.h5")
        lam = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda v: v * 2)])
        lam.save(out / "lambda.h5")
    return {p.stem: p for p in out.iterdir()}


def test_a_keras_h5_model_is_detected_and_clean(keras_files):
    report = scan_path(keras_files["benign"])
    assert report.format is FileFormat.KERAS_H5
    assert report.findings == ()


def test_cve_2025_9905_a_lambda_in_a_keras_h5_model_is_critical(keras_files):
    report = scan_path(keras_files["lambda"])
    hits = [f for f in report.findings if f.rule_id == "MAM-KERAS-001"]
    assert hits
    assert hits[0].severity is Severity.CRITICAL
    assert "CVE-2025-9905" in hits[0].message


def test_a_plain_hdf5_file_is_hdf5_and_clean():
    data = _h5(lambda f: f.create_dataset("x", data=np.arange(10)))
    report = scan_bytes(data, "data.h5")
    assert report.format is FileFormat.HDF5
    assert report.findings == ()


def test_model_config_naming_os_system_is_critical():
    layer = {
        "class_name": "Lambda",
        "config": {"function": "system", "function_type": "function", "module": "os"},
    }

    def build(f):
        f.attrs["model_config"] = _keras_config(layer).encode()
        f.attrs["keras_version"] = "2.15.0"

    report = scan_bytes(_h5(build), "m.h5")
    assert report.format is FileFormat.KERAS_H5
    assert "MAM-KERAS-002" in _rules(report)


def test_training_config_is_walked_too():
    loss = {"module": "subprocess", "class_name": "function", "config": "run"}

    def build(f):
        f.attrs["model_config"] = _keras_config()
        f.attrs["training_config"] = json.dumps({"loss": loss})

    assert "MAM-KERAS-002" in _rules(scan_bytes(_h5(build), "m.h5"))


def test_a_model_config_that_is_not_json_is_a_finding():
    def build(f):
        f.attrs["model_config"] = "{not json"

    assert "MAM-KERAS-005" in _rules(scan_bytes(_h5(build), "m.h5"))


def test_a_model_config_array_is_not_read():
    def build(f):
        f.attrs["model_config"] = np.array([b"{}", b"{}"])

    assert "MAM-KERAS-005" in _rules(scan_bytes(_h5(build), "m.h5"))


def test_an_external_link_to_another_file_is_reported():
    def build(f):
        f["weights"] = h5py.ExternalLink("../../etc/other.h5", "/data")

    report = scan_bytes(_h5(build), "m.h5")
    hits = [f for f in report.findings if f.rule_id == "MAM-H5-002"]
    assert hits
    assert "../../etc/other.h5" in (hits[0].evidence or "")


def test_a_dataset_stored_in_an_external_raw_file_is_reported():
    def build(f):
        f.create_dataset("e", shape=(4,), dtype="i4", external=[("/etc/hostname", 0, 16)])

    report = scan_bytes(_h5(build), "m.h5")
    hits = [f for f in report.findings if f.rule_id == "MAM-H5-003"]
    assert hits
    assert "/etc/hostname" in (hits[0].evidence or "")


def test_a_virtual_dataset_mapping_another_file_is_reported():
    def build(f):
        layout = h5py.VirtualLayout(shape=(2,), dtype="i4")
        layout[:] = h5py.VirtualSource("../secret.h5", "d", shape=(2,))
        f.create_virtual_dataset("v", layout)

    assert "MAM-H5-003" in _rules(scan_bytes(_h5(build), "m.h5"))


def test_soft_links_and_hard_link_cycles_are_walked_once():
    def build(f):
        g = f.create_group("g")
        g["loop"] = g  # a hard link back to itself
        f["alias"] = h5py.SoftLink("/g")
        g.create_dataset("x", data=[1])

    report = scan_bytes(_h5(build), "m.h5")
    assert report.findings == ()


def test_a_user_block_with_content_is_reported_and_scanned():
    data = bytearray(_h5(lambda f: f.create_dataset("x", data=[1]), userblock_size=512))
    data[:12] = b"hidden stuff"
    report = scan_bytes(bytes(data), "m.h5")
    assert "MAM-H5-004" in _rules(report)
    assert any(m.path[-1] == "<hdf5-user-block>" for m in report.members)


def test_an_empty_user_block_is_not_reported():
    data = _h5(lambda f: f.create_dataset("x", data=[1]), userblock_size=512)
    assert superblock_offset(data) == 512
    assert scan_bytes(data, "m.h5").findings == ()


def test_a_truncated_hdf5_file_is_a_finding_not_a_crash():
    data = _h5(lambda f: f.create_dataset("x", data=np.arange(1000)))
    report = scan_bytes(data[:600], "m.h5")
    assert "MAM-H5-001" in _rules(report)
    assert report.verdict is Verdict.UNSAFE


@given(st.binary(min_size=0, max_size=2048))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_garbage_after_the_signature_gives_a_finding(tail):
    report = scan_bytes(HDF5_MAGIC + tail, "m.h5")
    assert report.findings
    assert "MAM-GEN-001" not in _rules(report)


_SAMPLE = _h5(lambda f: (f.attrs.create("model_config", "{}"), f.create_dataset("x", data=[1, 2])))


@given(st.lists(st.tuples(st.integers(0, len(_SAMPLE) - 1), st.integers(0, 255)), max_size=8))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_hdf5_files_never_raise(flips):
    data = bytearray(_SAMPLE)
    for pos, value in flips:
        data[pos] = value
    report = scan_bytes(bytes(data), "m.h5")
    assert "MAM-GEN-001" not in _rules(report)


_RSS_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import h5py, numpy as np
    from mamori.scan import scan_path
    path, n = sys.argv[1], int(sys.argv[2])
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = '{"class_name": "Sequential", "config": {"layers": []}}'
        f.create_dataset("w", data=np.zeros(n, dtype=np.uint8))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = scan_path(path)
    assert report.findings == (), report.findings
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)
    """
)


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_dataset_size(tmp_path):
    def growth(n: int) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _RSS_SCRIPT, str(tmp_path / f"{n}.h5"), str(n)],
            check=True,
            capture_output=True,
            text=True,
        )
        return int(out.stdout.strip())

    small, large = growth(1 << 20), growth(256 << 20)
    # ru_maxrss is in KiB; 256 MiB of data must not show up as 256 MiB of memory.
    assert large - small < 48 * 1024


def test_a_file_that_makes_the_hdf5_library_loop_is_stopped_and_reported(monkeypatch):
    # Found by the mutation fuzzer: three flipped bytes make reading the model_config
    # attribute spin inside the HDF5 C library for minutes (tests/assets/hdf5/).
    from mamori.scan.formats import hdf5 as hdf5_module

    monkeypatch.setattr(hdf5_module, "CHILD_TIMEOUT_S", 3.0)
    asset = Path(__file__).parents[2] / "assets" / "hdf5" / "loops_hdf5_library.h5"
    report = scan_path(asset)
    hits = [f for f in report.findings if f.rule_id == "MAM-H5-001"]
    assert hits
    assert "did not finish" in hits[0].message
