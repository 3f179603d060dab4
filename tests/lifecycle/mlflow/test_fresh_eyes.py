"""Second red-team round on the MLflow promotion gate (after issue 13's fixes).

Each test is an attack by a user with EDIT rights on a real ``mlflow server --app-name
mamori-gate``: it shows whether a protected alias lands on bytes mamori never approved and
whether it survives a sweep.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from mamori.lifecycle.mlflow.events import build_integration
from mamori.lifecycle.mlflow.gate import grant_break_glass
from mamori.store.models_mlflow import MlflowVersionRow

from .conftest import ADMIN, ALICE
from .test_bypasses import (
    RENAME,
    STAGE,
    _alias_of,
    _approved,
    _artifact_path,
    _audit,
    _stage_of,
    _wait,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mlflow-stack")]


def _verified(mamori, name: str) -> bool:
    with mamori.store.read() as session:
        row = session.execute(
            select(MlflowVersionRow).where(MlflowVersionRow.name == name)
        ).scalar_one()
        return row.verified_at is not None


def test_freshEyes_break_glass_grant_follows_the_name_onto_swapped_in_bytes(  # noqa: N802
    stack, register_model, make_principal, unique
):
    mlflow, mamori = stack
    good, evil = unique("bgswap"), unique("bgswap-evil")
    version = register_model(good, malicious=False)
    mamori.verdicts(good, version)
    # An admin grants an exception for the benign, not yet approved build they looked at.
    grant_break_glass(
        mamori.lifecycle,
        make_principal("root", "admin"),
        name=good,
        version=version,
        alias="production",
        reason="incident 7: hotfix build, approval pending",
        duration=timedelta(minutes=30),
    )
    bad = register_model(evil, malicious=True)
    assert bad == version
    assert mamori.verdicts(evil, bad)["python_model.pkl"] == "unsafe"
    # An EDIT user swaps names; rename sends no webhook, the sweep rebinds good/1 to the new
    # object (the identity check works: the old binding is not reused).
    assert mlflow.rest(
        ADMIN, "POST", RENAME, json={"name": good, "new_name": f"{good}-old"}
    ).is_success
    assert mlflow.rest(ADMIN, "POST", RENAME, json={"name": evil, "new_name": good}).is_success
    integration = build_integration(mamori.settings, mamori.lifecycle)
    integration.sweep()
    assert mamori.verdicts(good, version)["python_model.pkl"] == "unsafe"
    response = mlflow.set_alias(ALICE, good, version, "production")
    integration.sweep()
    # Before the fix: 200, and the break-glass use kept the alias through every sweep.
    assert response.status_code == 403
    assert "break-glass" not in response.json()["message"]
    assert _alias_of(mlflow.url, good, "production") is None
    assert not _audit(mamori, "mlflow-break-glass-use", good)


def test_freshEyes_same_size_swap_before_promotion_of_a_recently_verified_version(  # noqa: N802
    stack, register_model, unique
):
    mlflow, mamori = stack
    name = unique("presize")
    version = _approved(mamori, register_model, name)
    # An earlier promotion had the bytes re-hashed by a sweep: verified minutes ago.
    assert mlflow.set_alias(ALICE, name, version, "champion").status_code == 200
    settings = mamori.settings.model_copy(update={"mlflow_reverify_minutes": 0})
    assert build_integration(settings, mamori.lifecycle).sweep().drifted == 0
    gone = mlflow.rest(  # the owner retired it (deleting an alias needs MANAGE)
        ADMIN,
        "DELETE",
        "/api/2.0/mlflow/registered-models/alias",
        json={"name": name, "alias": "champion"},
    )
    assert gone.is_success
    folder = _artifact_path(mlflow.url, name, version)
    original = mlflow.rest(ALICE, "GET", f"{folder}/MLmodel").content
    forged = bytes(reversed(original))  # same size: the listing the gate compares is unchanged
    assert mlflow.rest(ALICE, "PUT", f"{folder}/MLmodel", content=forged).is_success
    # The plugin compares (path, size) only: the promotion of the replaced bytes is allowed.
    assert mlflow.set_alias(ALICE, name, version, "production").status_code == 200
    # Before the fix the alias stayed until the next re-verification (60 minutes by default);
    # now the alias webhook has the bytes hashed at once and the alias removed.
    _wait(lambda: _alias_of(mlflow.url, name, "production") is None, "the alias stayed")
    build_integration(mamori.settings, mamori.lifecycle).sweep()
    assert _alias_of(mlflow.url, name, "production") is None
    (drift,) = _audit(mamori, "mlflow-drift", name)
    assert "MLmodel sha256" in drift.reason
    assert drift.reason.startswith("re-hash:")


@pytest.mark.xfail(
    strict=True,
    reason=(
        "MLflow sends no webhook for stage transitions and the plugin compares only (path, "
        "size), so a same-size replacement promoted by transition-stage is found only by the "
        "periodic re-hash, which skips versions verified in the last "
        "MAMORI_MLFLOW_REVERIFY_MINUTES (60)"
    ),
)
def test_freshEyes_same_size_swap_promoted_by_stage_waits_for_the_periodic_re_hash(  # noqa: N802
    stack, register_model, unique
):
    mlflow, mamori = stack
    name = unique("prestage")
    version = _approved(mamori, register_model, name)
    # An earlier Production stage (stages send no webhook) was re-hashed by a sweep.
    body = {"name": name, "version": version, "stage": "Production"}
    assert mlflow.rest(ALICE, "POST", STAGE, json=body).status_code == 200
    settings = mamori.settings.model_copy(update={"mlflow_reverify_minutes": 0})
    assert build_integration(settings, mamori.lifecycle).sweep().drifted == 0
    assert _verified(mamori, name)
    retired = {"name": name, "version": version, "stage": "Staging"}
    assert mlflow.rest(ADMIN, "POST", STAGE, json=retired).status_code == 200
    folder = _artifact_path(mlflow.url, name, version)
    original = mlflow.rest(ALICE, "GET", f"{folder}/MLmodel").content
    assert mlflow.rest(ALICE, "PUT", f"{folder}/MLmodel", content=original[::-1]).is_success
    body = {"name": name, "version": version, "stage": "Production"}
    assert mlflow.rest(ALICE, "POST", STAGE, json=body).status_code == 200
    build_integration(mamori.settings, mamori.lifecycle).sweep()
    assert _stage_of(mlflow.url, name, version) == "Archived"


def test_a_version_whose_source_names_another_artifact_host_is_refused_by_mlflow(stack, unique):
    # The plugin lists a mlflow-artifacts: path on this server whatever host the URI names,
    # while clients (consumers and mamori) would fetch from the named host: MLflow itself
    # refuses such sources, so the listing and the downloaded bytes cannot diverge this way.
    mlflow, _ = stack
    name = unique("hosted")
    created = mlflow.rest(
        ALICE, "POST", "/api/2.0/mlflow/registered-models/create", json={"name": name}
    )
    assert created.is_success
    for source in ("mlflow-artifacts://127.0.0.1:9/1/x/artifacts", "http://127.0.0.1:9/x"):
        response = mlflow.rest(
            ALICE,
            "POST",
            "/api/2.0/mlflow/model-versions/create",
            json={"name": name, "source": source},
        )
        assert response.status_code == 400, (source, response.text)
