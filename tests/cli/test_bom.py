"""`mamori bom`: a CycloneDX 1.6 ML-BOM that validates against the official schema and carries
each model's digests and verdict."""

from __future__ import annotations

import hashlib
import json
import pickle

import pytest
from typer.testing import CliRunner

from mamori.cli import app
from mamori.cli.exitcodes import EXIT_ERROR, EXIT_SAFE

runner = CliRunner()


class _Reduce:
    def __reduce__(self):
        import os

        return (os.system, ("true",))


EVIL = pickle.dumps(_Reduce(), protocol=4)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "evil.pkl").write_bytes(EVIL)
    (tmp_path / "models" / "config.json").write_text('{"architectures": ["BertModel"]}')
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps({"w": [1.0]}))
    return tmp_path


def _bom(*args):
    result = runner.invoke(app, ["bom", *args])
    assert result.exit_code == EXIT_SAFE, result.output
    return result.stdout


def test_the_bom_validates_against_the_cyclonedx_1_6_schema(workdir):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = _bom("models", "ok.pkl")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    assert json.loads(text)["specVersion"] == "1.6"


def test_each_scanned_path_is_a_model_with_its_digest_and_verdict(workdir):
    doc = json.loads(_bom("models", "ok.pkl"))
    models = {c["name"]: c for c in doc["components"]}
    assert {c["type"] for c in models.values()} == {"machine-learning-model"}
    props = {p["name"]: p["value"] for p in models["models"]["properties"]}
    assert props["mamori:verdict"] == "unsafe"
    assert {p["value"] for p in models["ok.pkl"]["properties"]} >= {"safe"}
    findings = [p["value"] for p in models["models"]["properties"] if p["name"] == "mamori:finding"]
    assert any(f.startswith("MAM-PKL-001 critical evil.pkl") for f in findings)
    files = {c["name"]: c for c in models["models"]["components"]}
    assert files["evil.pkl"]["hashes"] == [
        {"alg": "SHA-256", "content": hashlib.sha256(EVIL).hexdigest()}
    ]


def test_a_missing_path_is_an_error_and_writes_nothing(workdir):
    result = runner.invoke(app, ["bom", "nope", "-o", "bom.json"])
    assert result.exit_code == EXIT_ERROR
    assert not (workdir / "bom.json").exists()
