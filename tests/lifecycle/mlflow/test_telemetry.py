"""mamori never lets the MLflow client report usage to MLflow's servers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("mlflow")

_PROBE = """
import mamori.lifecycle.mlflow.resolve
from mlflow.telemetry.utils import is_telemetry_disabled
print(is_telemetry_disabled())
"""


def test_loading_the_mlflow_integration_turns_mlflow_telemetry_off():
    # A clean environment: no CI or pytest variables, which MLflow also reads as "off", and
    # no MLFLOW_DISABLE_TELEMETRY from the test run's own conftest.
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    probe = [sys.executable, "-c", _PROBE]
    out = subprocess.run(probe, env=env, capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "True"
