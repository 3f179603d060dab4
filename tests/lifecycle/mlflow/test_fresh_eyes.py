"""Second red-team round on the MLflow promotion gate (after issue 13's fixes).

Each test is an attack by a user with EDIT rights on a real ``mlflow server --app-name
mamori-gate``: it shows whether a protected alias lands on bytes mamori never approved and
whether it survives a sweep.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from mamori.lifecycle.mlflow.events import build_integration
from mamori.lifecycle.mlflow.gate import grant_break_glass

from .conftest import ADMIN, ALICE
from .test_bypasses import RENAME, _alias_of, _audit

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mlflow-stack")]


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
