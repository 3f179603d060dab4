"""Worker and service processes bound MLflow's HTTP timeouts, unless the operator set them."""

from __future__ import annotations

import os

from mamori.config import Settings
from mamori.lifecycle.mlflow.events import WORKER_HTTP_DEFAULTS, build_integration


def test_an_integration_bounds_mlflow_timeouts_and_retries(monkeypatch, lifecycle, tmp_path):
    for name in WORKER_HTTP_DEFAULTS:
        monkeypatch.setenv(name, "")  # so that teardown removes what the integration sets
        monkeypatch.delenv(name)
    settings = Settings(data_dir=tmp_path / "data", mlflow_tracking_uri="http://127.0.0.1:9")
    build_integration(settings, lifecycle)
    assert {n: os.environ[n] for n in WORKER_HTTP_DEFAULTS} == dict(WORKER_HTTP_DEFAULTS)


def test_the_operators_own_mlflow_timeout_wins(monkeypatch, lifecycle, tmp_path):
    for name in WORKER_HTTP_DEFAULTS:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    settings = Settings(data_dir=tmp_path / "data", mlflow_tracking_uri="http://127.0.0.1:9")
    build_integration(settings, lifecycle)
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "5"
