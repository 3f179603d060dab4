"""`mamori mlflow connect|sweep` against a server that is not there: a few seconds, the URL in
one line, exit 2. MLflow's own defaults (120 s per request, 7 retries) hung for minutes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mamori.cli.exitcodes import EXIT_ERROR

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(argv, tmp_path, uri, **extra_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAMORI_", "MLFLOW_"))}
    env |= {
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
        "MAMORI_DATA_DIR": str(tmp_path / "data"),
        "MAMORI_MLFLOW_TRACKING_URI": uri,
        "MAMORI_MLFLOW_WEBHOOK_SECRET": "s" * 32,
        **extra_env,
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "mamori", "mlflow", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    return result, time.monotonic() - started


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "argv", [["sweep"], ["connect", "--url", "http://127.0.0.1:1/v1/hooks/mlflow"]]
)
def test_a_refused_connection_fails_in_seconds_naming_the_url(tmp_path, argv):
    uri = f"http://127.0.0.1:{_closed_port()}"
    result, elapsed = _run(argv, tmp_path, uri)
    assert result.returncode == EXIT_ERROR, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert uri in result.stderr
    assert elapsed < 30


def test_a_server_that_never_answers_times_out_naming_the_url(tmp_path):
    # Accepts the TCP connection (the kernel does, from the backlog) and never replies.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result, elapsed = _run(["sweep"], tmp_path, uri, MLFLOW_HTTP_REQUEST_TIMEOUT="2")
    assert result.returncode == EXIT_ERROR, result.stderr
    assert uri in result.stderr
    assert "timed out" in result.stderr.lower() or "timeout" in result.stderr.lower()
    # Two attempts of 2 s plus a 1 s backoff, plus start-up: the operator's timeout is kept.
    assert elapsed < 30


def test_credentials_in_the_tracking_uri_are_not_printed(tmp_path):
    uri = f"http://admin:hunter2@127.0.0.1:{_closed_port()}"
    result, _ = _run(["sweep"], tmp_path, uri)
    assert result.returncode == EXIT_ERROR
    assert "hunter2" not in result.stderr
