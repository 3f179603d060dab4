"""``mamori pull``: the hub is found through ``HF_ENDPOINT``, the cache through ``HF_HUB_CACHE``."""

from __future__ import annotations

import io
import json
import os

import pytest
from tests.lifecycle.fakehub import FakeFile, FakeHub
from typer.testing import CliRunner

from mamori.cli import app
from mamori.cli.exitcodes import EXIT_CHECK_FAILED, EXIT_DENIED, EXIT_ERROR, EXIT_SAFE

CONFIG = json.dumps({"model_type": "bert", "hidden_size": 8}).encode()


class _Reduce:
    def __reduce__(self):
        return (os.system, ("true",))


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


def _importer() -> str:
    result = _run("token", "mint", "--role", "importer", "--subject", "ivan")
    assert result.exit_code == EXIT_SAFE, result.output
    return result.stdout.strip()


def test_a_safe_repo_is_released_and_exits_0(env, hub):
    repo = hub.add("acme/tiny", {"config.json": FakeFile(CONFIG)})
    result = _run("pull", "acme/tiny", "--format", "json", "--token", _importer())
    assert result.exit_code == EXIT_SAFE, result.output
    data = json.loads(result.stdout)
    assert data["outcome"] == "released"
    assert data["uri"] == f"hf://acme/tiny@{repo.commit}"
    cached = env / "hf-cache" / "models--acme--tiny" / "snapshots" / repo.commit / "config.json"
    assert cached.read_bytes() == CONFIG


def test_a_malicious_repo_stays_in_quarantine_and_exits_1(env, hub):
    import torch

    buffer = io.BytesIO()
    torch.save(_Reduce(), buffer)
    repo = hub.add("acme/evil", {"pytorch_model.bin": FakeFile(buffer.getvalue(), lfs=True)})
    result = _run("pull", f"acme/evil@{repo.commit}", "--token", _importer())
    assert result.exit_code == EXIT_CHECK_FAILED, result.output
    assert "quarantined" in result.stdout
    assert "unsafe" in result.stdout
    assert not (env / "hf-cache" / "models--acme--evil").exists()


def test_a_pull_without_a_token_is_denied(env, hub):
    result = _run("pull", "acme/tiny")
    assert result.exit_code == EXIT_DENIED
    assert hub.hits == []


def test_a_viewer_may_not_pull(env, hub):
    token = _run("token", "mint", "--role", "viewer").stdout.strip()
    result = _run("pull", "acme/tiny", "--token", token)
    assert result.exit_code == EXIT_DENIED
    assert hub.hits == []


def test_an_unknown_repo_exits_2(env, hub):
    result = _run("pull", "acme/missing", "--token", _importer())
    assert result.exit_code == EXIT_ERROR
    assert "HTTP 404" in result.stderr
