"""``mamori verify models:/NAME@ALIAS`` against the real MLflow server: the bytes, not the name."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from mamori.cli import app
from mamori.cli.exitcodes import EXIT_CHECK_FAILED, EXIT_SAFE
from mamori.identity.apitokens import Scope
from mamori.lifecycle.verify import HttpGate, StoreGate, verify
from mamori.store.apitokens import ApiTokens

from .conftest import ALICE

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mlflow-stack")]


@pytest.fixture
def promoted(stack, register_model, unique):
    """An approved version holding ``production``."""
    mlflow, mamori = stack
    name = unique("verify")
    version = register_model(name, malicious=False)
    mamori.verdicts(name, version)
    mamori.approve_all(name, version)
    assert mlflow.set_alias(ALICE, name, version, "production").status_code == 200
    return name, version


def _env(monkeypatch, mamori) -> None:
    monkeypatch.setenv("MAMORI_DATA_DIR", str(mamori.settings.data_dir))
    monkeypatch.setenv("MAMORI_DATABASE_URL", mamori.settings.resolved_database_url)
    monkeypatch.setenv("MAMORI_MLFLOW_TRACKING_URI", mamori.settings.mlflow_tracking_uri)


def test_an_approved_version_behind_its_alias_verifies_in_process(stack, promoted):
    _, mamori = stack
    result = verify(
        StoreGate(mamori.lifecycle), f"models:/{promoted[0]}@production", settings=mamori.settings
    )
    assert result.deployable, result.reason
    assert result.target == f"models:/{promoted[0]}/{promoted[1]}"


def test_an_approved_version_verifies_over_the_gate_api(stack, promoted):
    _, mamori = stack
    token = ApiTokens(mamori.store).create(
        name="serving", subject="serving", roles=(), scopes=(Scope.GATE,), created_by="t"
    )
    with HttpGate(mamori.url, token.secret) as gate:
        result = verify(gate, f"models:/{promoted[0]}@production", settings=mamori.settings)
    assert result.deployable, result.reason


def test_bytes_replaced_behind_a_kept_alias_fail_verification_before_load(
    stack, promoted, monkeypatch
):
    mlflow, mamori = stack
    name, version = promoted
    uri = MlflowClient().get_model_version_download_uri(name, version)
    folder = "/api/2.0/mlflow-artifacts/artifacts/" + uri.removeprefix("mlflow-artifacts:").strip(
        "/"
    )
    original = mlflow.rest(ALICE, "GET", f"{folder}/MLmodel").content
    forged = bytes(reversed(original))  # same size: the listing still matches
    assert mlflow.rest(ALICE, "PUT", f"{folder}/MLmodel", content=forged).is_success
    # The alias still points at the version, and MLflow serves the forged bytes through it.
    assert str(MlflowClient().get_model_version_by_alias(name, "production").version) == version
    _env(monkeypatch, mamori)
    monkeypatch.delenv("MAMORI_GATE_URL", raising=False)
    result = CliRunner().invoke(app, ["verify", f"models:/{name}@production"])
    assert result.exit_code == EXIT_CHECK_FAILED, result.output
    assert "MLmodel sha256" in result.stdout


def test_the_cli_exits_0_for_an_approved_alias(stack, promoted, monkeypatch):
    _, mamori = stack
    _env(monkeypatch, mamori)
    monkeypatch.delenv("MAMORI_GATE_URL", raising=False)
    result = CliRunner().invoke(app, ["verify", f"models:/{promoted[0]}@production"])
    assert result.exit_code == EXIT_SAFE, result.output
