"""``mamori verify``: hash what a consumer would load and ask the gate for exactly those bytes."""

from __future__ import annotations

import json
import os
import pickle

import pytest
from tests.lifecycle.conftest import make_principal
from tests.lifecycle.fakehub import FakeFile, FakeHub
from typer.testing import CliRunner

from mamori.cli import app
from mamori.cli.exitcodes import EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_SAFE
from mamori.config import load_settings
from mamori.lifecycle.factory import build_lifecycle
from mamori.store.models import ApprovalDecision

CONFIG = json.dumps({"model_type": "bert", "hidden_size": 8}).encode()
WEIGHTS = pickle.dumps({"weights": [1.0, 2.0]}, protocol=4)


@pytest.fixture
def hub():
    server = FakeHub()
    yield server
    server.close()


@pytest.fixture
def env(tmp_path, monkeypatch, hub):
    for name in [n for n in os.environ if n.startswith("MAMORI_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MAMORI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("MAMORI_HF_REDIRECT_HOSTS", json.dumps([hub.cdn_host]))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def _pulled(hub) -> tuple[str, list[str]]:
    repo = hub.add("acme/tiny", {"config.json": FakeFile(CONFIG)})
    token = _run("token", "mint", "--role", "importer", "--subject", "ivan").stdout.strip()
    pulled = _run("pull", "acme/tiny", "--format", "json", "--token", token)
    assert pulled.exit_code == EXIT_SAFE, pulled.output
    digests = [f["sha256"] for f in json.loads(pulled.stdout)["files"]]
    return repo.commit, digests


def _approve(*digests: str) -> None:
    lifecycle = build_lifecycle(load_settings())
    for digest in digests:
        lifecycle.decide(make_principal("paula", "approver"), digest, ApprovalDecision.APPROVED)


def test_a_released_but_unapproved_snapshot_is_not_deployable(env, hub):
    _pulled(hub)
    result = _run("verify", "hf://acme/tiny@main")
    assert result.exit_code == EXIT_CHECK_FAILED, result.output
    assert "NOT deployable" in result.stdout


def test_an_approved_snapshot_is_deployable(env, hub):
    commit, digests = _pulled(hub)
    _approve(*digests)
    result = _run("verify", "hf://acme/tiny@main", "--format", "json")
    assert result.exit_code == EXIT_SAFE, result.output
    document = json.loads(result.stdout)
    assert document["target"] == f"hf://acme/tiny@{commit}"
    assert [f["sha256"] for f in document["files"]] == digests


def test_a_file_added_to_an_approved_snapshot_makes_it_undeployable(env, hub):
    commit, digests = _pulled(hub)
    _approve(*digests)
    snapshot = env / "hf-cache" / "models--acme--tiny" / "snapshots" / commit
    (snapshot / "pytorch_model.bin").write_bytes(WEIGHTS)
    result = _run("verify", f"hf://acme/tiny@{commit}")
    assert result.exit_code == EXIT_CHECK_FAILED, result.output
    assert "pytorch_model.bin added" in result.stdout


def test_a_local_file_mamori_never_scanned_is_not_deployable(env):
    (env / "model.pkl").write_bytes(WEIGHTS)
    result = _run("verify", str(env / "model.pkl"))
    assert result.exit_code == EXIT_CHECK_FAILED, result.output
    assert "unknown digest" in result.stdout


def test_a_local_folder_of_approved_bytes_is_deployable(env, hub):
    _, digests = _pulled(hub)
    _approve(*digests)
    folder = env / "model"
    folder.mkdir()
    (folder / "config.json").write_bytes(CONFIG)
    assert _run("verify", str(folder)).exit_code == EXIT_SAFE


def test_a_models_uri_without_a_tracking_server_is_an_error(env):
    result = _run("verify", "models:/fraud@production")
    assert result.exit_code == EXIT_ERROR
    assert "MAMORI_MLFLOW_TRACKING_URI" in result.output


@pytest.mark.parametrize("target", ["models:/", "models:/a@b@c", "hf://not a repo"])
def test_a_malformed_target_is_an_error_naming_it(env, target):
    result = _run("verify", target)
    assert result.exit_code == EXIT_ERROR
    assert "mamori verify:" in result.output
