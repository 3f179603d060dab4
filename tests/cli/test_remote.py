"""`mamori scan URL`: fetched into a temporary quarantine, scanned, removed; the URL and the
digests of the scanned bytes in the report. Every source is a real server on 127.0.0.1: a
plain HTTP server, the fake Hugging Face hub of the lifecycle tests, moto's S3 server and a
real MLflow tracking store."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import pickle
import socket
import sys
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mamori.cli import app
from mamori.cli.exitcodes import EXIT_ERROR, EXIT_SAFE, EXIT_UNSAFE

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


class _Reduce:
    def __reduce__(self):
        import os

        return (os.system, ("true",))


EVIL = pickle.dumps(_Reduce(), protocol=4)
BENIGN = pickle.dumps({"w": [1.0, 2.0]}, protocol=4)


@pytest.fixture
def quarantine_root(tmp_path, monkeypatch):
    # Every temporary directory lands here, so the test can see the quarantine is gone.
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    for name in [n for n in os.environ if n.startswith("MAMORI_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return root


def _json_scan(*targets):
    result = runner.invoke(app, ["scan", "--format", "json", *targets])
    return result, (json.loads(result.stdout) if result.stdout.startswith("{") else None)


@contextlib.contextmanager
def _http_server(directory: Path):
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=directory))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_an_https_style_url_is_fetched_scanned_and_removed(tmp_path, quarantine_root):
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "evil.pkl").write_bytes(EVIL)
    with _http_server(tmp_path / "www") as base:
        url = f"{base}/evil.pkl"
        result, doc = _json_scan(url)
    assert result.exit_code == EXIT_UNSAFE, result.output
    report = doc["reports"][0]
    assert report["path"] == url
    assert report["sha256"] == hashlib.sha256(EVIL).hexdigest()
    assert "MAM-PKL-001" in {f["rule_id"] for f in report["findings"]}
    assert any(note.startswith(f"fetched from {url}") for note in report["notes"])
    assert list(quarantine_root.iterdir()) == []


def test_a_missing_url_is_a_one_line_error_naming_it(tmp_path, quarantine_root):
    (tmp_path / "www").mkdir()
    with _http_server(tmp_path / "www") as base:
        result = runner.invoke(app, ["scan", f"{base}/nope.pkl"])
    assert result.exit_code == EXIT_ERROR
    assert f"{base}/nope.pkl: HTTP 404" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(quarantine_root.iterdir()) == []


def test_an_unreachable_url_fails_naming_it(quarantine_root):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = runner.invoke(app, ["scan", f"http://127.0.0.1:{port}/m.pkl"])
    assert result.exit_code == EXIT_ERROR
    assert f"http://127.0.0.1:{port}/m.pkl: cannot download" in result.stderr


def test_sarif_of_a_url_points_at_the_url(tmp_path, quarantine_root):
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "evil.pkl").write_bytes(EVIL)
    with _http_server(tmp_path / "www") as base:
        result = runner.invoke(app, ["scan", "-f", "sarif", f"{base}/evil.pkl"])
    log = json.loads(result.stdout)
    uri = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert uri["uri"] == f"{base}/evil.pkl"


# --- Hugging Face ----------------------------------------------------------------------------


def _fakehub():
    spec = importlib.util.spec_from_file_location(
        "mamori_test_fakehub", ROOT / "tests" / "lifecycle" / "fakehub.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def hub(monkeypatch):
    fakehub = _fakehub()
    server = fakehub.FakeHub()
    monkeypatch.setenv("MAMORI_HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("MAMORI_HF_REDIRECT_HOSTS", json.dumps([server.cdn_host]))
    yield server, fakehub
    server.close()


def test_an_hf_repo_at_a_revision_is_scanned_as_one_artifact(quarantine_root, hub):
    server, fakehub = hub
    repo = server.add(
        "org/tiny",
        {
            "config.json": fakehub.FakeFile(b'{"architectures": ["BertModel"]}'),
            "pytorch_model.bin": fakehub.FakeFile(EVIL, lfs=True),
        },
    )
    quarantine_root_before = list(quarantine_root.iterdir())
    result, doc = _json_scan(f"hf://org/tiny@{repo.commit}")
    assert result.exit_code == EXIT_UNSAFE, result.output
    report = doc["reports"][0]
    assert report["path"] == f"hf://org/tiny@{repo.commit}"
    members = {m["path"][0]: m["sha256"] for m in report["members"]}
    assert members["pytorch_model.bin"] == hashlib.sha256(EVIL).hexdigest()
    assert any(f"@{repo.commit}" in note for note in report["notes"])
    assert list(quarantine_root.iterdir()) == quarantine_root_before == []


def test_an_hf_file_served_with_other_bytes_is_refused(quarantine_root, hub):
    server, fakehub = hub
    server.add("org/tampered", {"model.pkl": fakehub.FakeFile(BENIGN, lfs=True, served=EVIL)})
    result = runner.invoke(app, ["scan", "hf://org/tampered"])
    assert result.exit_code == EXIT_ERROR, result.output
    assert "org/tampered" in result.stderr
    assert list(quarantine_root.iterdir()) == []


# --- S3 (moto's server mode) -----------------------------------------------------------------


@pytest.fixture
def s3(monkeypatch):
    boto3 = pytest.importorskip("boto3")
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket="models")
    yield client
    server.stop()


@pytest.mark.slow
def test_an_s3_object_is_fetched_and_scanned(quarantine_root, s3):
    s3.put_object(Bucket="models", Key="team/evil.pkl", Body=EVIL)
    result, doc = _json_scan("s3://models/team/evil.pkl")
    assert result.exit_code == EXIT_UNSAFE, result.output
    assert doc["reports"][0]["sha256"] == hashlib.sha256(EVIL).hexdigest()
    assert list(quarantine_root.iterdir()) == []


@pytest.mark.slow
def test_an_s3_prefix_is_one_artifact_of_every_object_under_it(quarantine_root, s3):
    s3.put_object(Bucket="models", Key="safe/a.pkl", Body=BENIGN)
    s3.put_object(Bucket="models", Key="safe/sub/b.pkl", Body=BENIGN)
    result, doc = _json_scan("s3://models/safe/")
    assert result.exit_code == EXIT_SAFE, result.output
    assert sorted(m["path"][0] for m in doc["reports"][0]["members"]) == ["a.pkl", "sub/b.pkl"]


@pytest.mark.slow
def test_a_missing_s3_object_names_the_url(quarantine_root, s3):
    result = runner.invoke(app, ["scan", "s3://models/nope.pkl"])
    assert result.exit_code == EXIT_ERROR
    assert "s3://models/nope.pkl" in result.stderr


# --- MLflow models:/ -------------------------------------------------------------------------


@pytest.mark.slow
# MLflow's own SQL store trips SQLAlchemy deprecations (as the lifecycle MLflow tests note).
@pytest.mark.filterwarnings("ignore:::mlflow")
@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")
def test_an_mlflow_model_alias_is_fetched_and_scanned(tmp_path, quarantine_root, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    artifacts = tmp_path / "artifacts"
    client = MlflowClient(tracking_uri=tracking)
    experiment = client.create_experiment("e", artifact_location=artifacts.as_uri())
    run = client.create_run(experiment)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.pkl").write_bytes(EVIL)
    (model_dir / "MLmodel").write_text("flavors: {}\n")
    client.log_artifacts(run.info.run_id, str(model_dir), "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("fraud")
    version = client.create_model_version(
        "fraud", f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    client.set_registered_model_alias("fraud", "champion", version.version)
    monkeypatch.setenv("MAMORI_MLFLOW_TRACKING_URI", tracking)
    # Another part of the process pointed MLflow's global registry elsewhere: the scan must
    # still resolve the alias on the configured server (this once made it fail under xdist).
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", elsewhere)  # both restored after the test
    monkeypatch.setattr(mlflow.tracking._model_registry.utils, "_registry_uri", elsewhere)
    result, doc = _json_scan("models:/fraud@champion")
    assert result.exit_code == EXIT_UNSAFE, result.output
    report = doc["reports"][0]
    assert report["path"] == "models:/fraud@champion"
    members = {m["path"][0]: m["sha256"] for m in report["members"]}
    assert members["model.pkl"] == hashlib.sha256(EVIL).hexdigest()
    assert list(quarantine_root.iterdir()) == []
