"""NeMo ``.nemo`` archives: Hydra targets in model_config.yaml, members scanned by content."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamori.findings import FileFormat, Severity
from mamori.scan import scan_bytes
from mamori.scan.formats.interface import Probe
from mamori.scan.formats.nemo import (
    ALLOWED_TARGETS,
    DANGEROUS_TARGETS,
    NemoHandler,
    classify_target,
)

BENIGN_CONFIG = b"""\
sample_rate: 16000
encoder:
  _target_: nemo.collections.asr.modules.ConformerEncoder
  n_layers: 2
decoder:
  _target_: nemo.collections.asr.modules.ConvASRDecoder
optim:
  name: adamw
  sched:
    _target_: torch.optim.lr_scheduler.CosineAnnealingLR
    T_max: 10
"""


def _tar(members: list[tuple[str, bytes]], *, gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue()) if gz else buf.getvalue()


def _nemo(config: bytes, *, gz: bool = False) -> bytes:
    weights = pickle.dumps({"w": [1.0, 2.0]})
    return _tar([("./model_config.yaml", config), ("./model_weights.ckpt", weights)], gz=gz)


def _nemo_rules(report) -> list[str]:
    return [f.rule_id for f in report.findings if f.rule_id.startswith("MAM-NEMO-")]


def test_a_nemo_archive_with_allowlisted_targets_has_no_nemo_findings():
    report = scan_bytes(_nemo(BENIGN_CONFIG), "m.nemo")
    assert report.format is FileFormat.NEMO
    assert _nemo_rules(report) == []


def test_the_checkpoint_member_is_scanned_by_content():
    report = scan_bytes(_nemo(BENIGN_CONFIG), "m.nemo")
    assert any(m.path[-1] == "./model_weights.ckpt" for m in report.members)


def test_a_target_of_os_system_is_critical_with_its_line():
    config = BENIGN_CONFIG + b"evil:\n  _target_: os.system\n  _args_: ['true']\n"
    report = scan_bytes(_nemo(config), "m.nemo")
    hits = [f for f in report.findings if f.rule_id == "MAM-NEMO-001"]
    assert hits
    assert hits[0].severity is Severity.CRITICAL
    assert hits[0].location.member == ("./model_config.yaml",)
    assert "line 13" in hits[0].message


@pytest.mark.parametrize(
    "target",
    [
        "builtins.exec",
        "subprocess.Popen",
        "hydra.utils.get_method",
        "pydoc.locate",
        "importlib.import_module",
        "exec",
    ],
)
def test_code_running_targets_are_critical(target):
    config = f"x:\n  _target_: {target}\n  _partial_: true\n".encode()
    assert _nemo_rules(scan_bytes(_nemo(config), "m.nemo")) == ["MAM-NEMO-001"]


def test_an_unknown_third_party_target_is_high():
    config = b"x:\n  _target_: somepkg.models.Thing\n"
    report = scan_bytes(_nemo(config), "m.nemo")
    hits = [f for f in report.findings if f.rule_id == "MAM-NEMO-002"]
    assert hits
    assert hits[0].severity is Severity.HIGH


def test_targets_nested_in_args_lists_are_checked():
    config = (
        b"x:\n  _target_: torch.nn.Sequential\n  _args_:\n"
        b"    - _target_: os.system\n      _args_: ['true']\n"
    )
    assert "MAM-NEMO-001" in _nemo_rules(scan_bytes(_nemo(config), "m.nemo"))


def test_hydra_0x_cls_with_params_is_checked():
    config = b"x:\n  cls: subprocess.run\n  params:\n    args: ['true']\n"
    assert "MAM-NEMO-001" in _nemo_rules(scan_bytes(_nemo(config), "m.nemo"))


def test_a_plain_cls_key_without_params_is_just_data():
    config = b"labels:\n  cls: some label\n"
    assert _nemo_rules(scan_bytes(_nemo(config), "m.nemo")) == []


def test_a_python_yaml_tag_is_critical():
    config = b"x: !!python/object/apply:os.system ['true']\n"
    assert "MAM-NEMO-001" in _nemo_rules(scan_bytes(_nemo(config), "m.nemo"))


def test_a_gzipped_nemo_is_found_inside_the_gzip():
    config = b"x:\n  _target_: os.system\n"
    report = scan_bytes(_nemo(config, gz=True), "m.nemo")
    hits = [f for f in report.findings if f.rule_id == "MAM-NEMO-001"]
    assert hits
    assert hits[0].location.member[-1] == "./model_config.yaml"


def test_an_archive_with_weights_but_no_config_is_a_finding():
    data = _tar([("./model_weights.ckpt", pickle.dumps(1))])
    assert _nemo_rules(scan_bytes(data, "m.nemo")) == ["MAM-NEMO-003"]


def test_invalid_yaml_is_a_finding():
    config = b"x: [unclosed\n  - {"
    assert _nemo_rules(scan_bytes(_nemo(config), "m.nemo")) == ["MAM-NEMO-003"]


def test_a_billion_laughs_config_is_walked_once_per_node():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [
        f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 30)
    ]
    config = ("\n".join(lines) + "\n").encode()
    started = time.monotonic()
    report = scan_bytes(_nemo(config), "m.nemo")
    assert time.monotonic() - started < 10
    assert _nemo_rules(report) == []


def test_a_plain_tar_is_not_claimed():
    data = _tar([("readme.txt", b"hello")])
    probe = Probe(head=data[:65536], tail=data[-65536:], size=len(data), name="x.tar")
    assert not NemoHandler().sniff(probe)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("nemo.collections.asr.models.EncDecCTCModel", None),
        ("torch.optim.AdamW", None),
        ("lightning.pytorch.callbacks.ModelCheckpoint", None),
        ("omegaconf.OmegaConf.load", "MAM-NEMO-001"),
        ("torch.load", "MAM-NEMO-001"),
        ("nemo.utils.model_utils.import_class_by_path", "MAM-NEMO-001"),
        ("transformers.AutoModel.from_pretrained", "MAM-NEMO-002"),
        ("__import__", "MAM-NEMO-001"),
    ],
)
def test_target_classification(target, expected):
    verdict = classify_target(target)
    assert (verdict[0] if verdict else None) == expected


def test_every_list_entry_has_a_rationale():
    assert all(ALLOWED_TARGETS.values())
    assert all(DANGEROUS_TARGETS.values())


@given(st.text(max_size=300))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_config_text_gives_findings_never_exceptions(text):
    report = scan_bytes(_nemo(text.encode("utf-8", "surrogatepass")), "m.nemo")
    assert not any(f.rule_id == "MAM-GEN-001" for f in report.findings)


@given(st.binary(max_size=200))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_config_bytes_give_findings_never_exceptions(raw):
    report = scan_bytes(_nemo(raw), "m.nemo")
    assert not any(f.rule_id == "MAM-GEN-001" for f in report.findings)
