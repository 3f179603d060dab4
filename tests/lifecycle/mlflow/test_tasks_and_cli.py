"""Huey task registration and the ``mamori mlflow`` commands (no MLflow server)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mamori.cli import app
from mamori.config import load_settings
from mamori.errors import ConfigError
from mamori.lifecycle.mlflow.tasks import register_mlflow_tasks
from mamori.lifecycle.queue import make_queue


def test_no_mlflow_tasks_are_registered_without_a_tracking_uri(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    assert register_mlflow_tasks(make_queue(settings, immediate=True), settings) is None


def test_the_sweep_and_rescan_are_periodic_tasks_on_the_queue(tmp_path):
    settings = load_settings(data_dir=tmp_path, mlflow_tracking_uri="http://127.0.0.1:1")
    queue = make_queue(settings, immediate=True)
    tasks = register_mlflow_tasks(queue, settings)
    assert tasks is not None
    periodic = {t.__name__ for t in queue.huey._registry._periodic_tasks}
    assert {"mamori.mlflow.sweep", "mamori.mlflow.rescan"} <= periodic


def test_a_malformed_sweep_schedule_is_a_configuration_error(tmp_path):
    settings = load_settings(
        data_dir=tmp_path, mlflow_tracking_uri="http://127.0.0.1:1", mlflow_sweep_cron="* *"
    )
    with pytest.raises(ConfigError, match="mlflow_sweep_cron"):
        register_mlflow_tasks(make_queue(settings, immediate=True), settings)


def test_connect_without_configuration_exits_2_with_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("MAMORI_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MAMORI_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["mlflow", "connect", "--url", "http://x/v1/hooks/mlflow"])
    assert result.exit_code == 2
    assert "MAMORI_MLFLOW_TRACKING_URI" in result.output


def test_the_mlflow_commands_document_their_exit_codes():
    result = CliRunner().invoke(app, ["mlflow", "sweep", "--help"])
    assert result.exit_code == 0
    assert "Exit codes" in result.output
