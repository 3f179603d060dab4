"""``mamori serve-model``: the CLI verifies the bytes, then serves them from the sandbox."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import pytest
from sklearn.linear_model import LogisticRegression
from tests.lifecycle.conftest import make_principal
from typer.testing import CliRunner

from mamori.cli import app
from mamori.cli.exitcodes import EXIT_CHECK_FAILED, EXIT_SAFE
from mamori.config import load_settings
from mamori.lifecycle.factory import build_lifecycle
from mamori.store.models import ApprovalDecision

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


@pytest.fixture
def model(tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("MAMORI_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MAMORI_DATA_DIR", str(tmp_path / "data"))
    folder = tmp_path / "release"
    folder.mkdir()
    path = folder / "model.pkl"
    fitted = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    path.write_bytes(pickle.dumps(fitted))
    return path


def test_serve_model_answers_predictions_for_approved_bytes(model):
    lifecycle = build_lifecycle(load_settings())
    sha = lifecycle.import_file(make_principal("ivan", "importer"), model).sha256
    lifecycle.run_scan(sha)
    lifecycle.decide(make_principal("paula", "approver"), sha, ApprovalDecision.APPROVED)
    request = json.dumps({"inputs": [[0.1], [2.9]]}) + "\n"
    result = CliRunner().invoke(
        app, ["serve-model", str(model), "--flavour", "pickle"], input=request
    )
    assert result.exit_code == EXIT_SAFE, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"ok": True, "outputs": [0, 1]}


def test_serve_model_refuses_bytes_the_gate_never_approved(model):
    result = CliRunner().invoke(app, ["serve-model", str(model), "--flavour", "pickle"])
    assert result.exit_code == EXIT_CHECK_FAILED, result.output
    assert "not deployable" in result.output
