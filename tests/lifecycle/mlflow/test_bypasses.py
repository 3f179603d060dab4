"""Issue 13: the registry gate binds bytes, not names. One regression test per bypass found.

Each attack runs against a real ``mlflow server``: the gated one (basic auth and the
mamori-gate plugin) refuses, and on the plain one (no plugin) the attack first succeeds, which
shows it is real, and then the sweep undoes it with an audit record.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy import select

from mamori.lifecycle.mlflow.events import build_integration
from mamori.lifecycle.mlflow.resolve import registry_of
from mamori.lifecycle.mlflow.webhook import sign
from mamori.store.models import AuditRow
from mamori.store.models_mlflow import MlflowVersionRow

from .conftest import ADMIN, ALICE, SECRET

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("mlflow-stack")]

PROMPT_TAG = "mlflow.prompt.is_prompt"
RENAME = "/api/2.0/mlflow/registered-models/rename"
STAGE = "/api/2.0/mlflow/model-versions/transition-stage"


def _audit(mamori, action: str, name: str) -> list[AuditRow]:
    with mamori.store.read() as session:
        rows = session.execute(select(AuditRow).where(AuditRow.action == action)).scalars()
        return [r for r in rows if f":{name}/" in r.resource]


def _approved(mamori, register_model, name: str, **kw) -> str:
    version = register_model(name, malicious=False, **kw)
    mamori.verdicts(name, version)
    mamori.approve_all(name, version)
    return version


def _alias_of(tracking_uri: str, name: str, alias: str) -> str | None:
    registry = registry_of(MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri))
    try:
        return str(registry.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _stage_of(tracking_uri: str, name: str, version: str) -> str:
    registry = registry_of(MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri))
    return str(registry.get_model_version(name, version).current_stage)


def _artifact_path(mlflow_url: str, name: str, version: str) -> str:
    """The version's artifact folder as the mlflow-artifacts REST API names it."""
    uri = MlflowClient(tracking_uri=mlflow_url).get_model_version_download_uri(name, version)
    assert uri.startswith("mlflow-artifacts:/"), uri
    return "/api/2.0/mlflow-artifacts/artifacts/" + uri.removeprefix("mlflow-artifacts:").strip("/")


def _deliver(mamori, entity: str, action: str, **data) -> httpx.Response:
    body = json.dumps(
        {"entity": entity, "action": action, "timestamp": "2026-01-01T00:00:00Z", "data": data}
    ).encode()
    delivery_id, timestamp = str(uuid.uuid4()), str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": timestamp,
        "X-MLflow-Signature": sign(SECRET.encode(), delivery_id, timestamp, body),
    }
    return httpx.post(f"{mamori.url}/v1/hooks/mlflow", content=body, headers=headers, timeout=10)


def _wait(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


# --- 1. rename swap -------------------------------------------------------------------------


def test_a_model_renamed_onto_an_approved_name_does_not_inherit_its_approval(
    stack, register_model, unique
):
    mlflow, mamori = stack
    good, evil = unique("swap"), unique("swap-evil")
    _approved(mamori, register_model, good)
    bad = register_model(evil, malicious=True)
    mamori.verdicts(evil, bad)
    assert mlflow.rest(
        ADMIN, "POST", RENAME, json={"name": good, "new_name": f"{good}-old"}
    ).is_success
    assert mlflow.rest(ADMIN, "POST", RENAME, json={"name": evil, "new_name": good}).is_success
    response = mlflow.set_alias(ALICE, good, "1", "production")
    assert response.status_code == 403
    assert "different model version" in response.json()["message"]
    (denied,) = [r for r in _audit(mamori, "mlflow-promote", good) if r.decision == "deny"]
    assert "renamed" in denied.reason
    assert _audit(mamori, "mlflow-drift", good)


def test_a_rename_swap_on_a_server_without_the_plugin_is_undone_by_the_sweep(
    stack, plain, register_model, unique
):
    _, mamori = stack
    integration = plain.integration(mamori)
    good, evil = unique("pswap"), unique("pswap-evil")
    register_model(good, malicious=False, tracking_uri=plain.url)
    register_model(evil, malicious=True, tracking_uri=plain.url)
    integration.sweep()
    mamori.verdicts(good, "1")
    mamori.approve_all(good, "1")
    assert plain.rest("POST", RENAME, json={"name": good, "new_name": f"{good}-old"}).is_success
    assert plain.rest("POST", RENAME, json={"name": evil, "new_name": good}).is_success
    assert plain.set_alias(good, "1", "production").is_success  # no plugin: the attack works
    integration.sweep()
    assert _alias_of(plain.url, good, "production") is None
    assert _audit(mamori, "mlflow-alias-removed", good)
    # The renamed-away approved model is still the approved object under its new name.
    assert integration.lifecycle.gate_binding("mlflow", f"{good}-old", "1").allowed


# --- 2. delete and re-register --------------------------------------------------------------


def test_a_deleted_and_re_registered_version_is_bound_to_its_new_bytes(
    stack, register_model, unique
):
    mlflow, mamori = stack
    name = unique("reborn")
    first = _approved(mamori, register_model, name)
    deleted = mlflow.rest(
        ADMIN, "DELETE", "/api/2.0/mlflow/registered-models/delete", json={"name": name}
    )
    assert deleted.is_success
    again = register_model(name, malicious=True)
    assert again == first  # the same name and number, another object
    response = mlflow.set_alias(ALICE, name, again, "production")
    assert response.status_code == 403
    # The model_version.created webhook makes mamori bind the new object's bytes.
    _wait(lambda: mamori.digests(name, again, "python_model.pkl"), "the new bytes were not bound")
    assert mamori.verdicts(name, again)["python_model.pkl"] == "unsafe"
    assert _audit(mamori, "mlflow-rebind", name)


# --- 3. in-place artifact replacement -------------------------------------------------------


def test_an_artifact_replaced_in_place_through_the_artifacts_api_is_refused(
    stack, register_model, unique
):
    mlflow, mamori = stack
    name = unique("inplace")
    version = _approved(mamori, register_model, name)
    folder = _artifact_path(mlflow.url, name, version)
    # MLmodel names the loader every consumer of models:/ runs; any flavor file would do.
    payload = b"flavors:\n  python_function:\n    loader_module: attacker\n"
    assert mlflow.rest(ALICE, "PUT", f"{folder}/MLmodel", content=payload).is_success
    # Without mamori, consumers of this version now load these bytes.
    assert mlflow.rest(ALICE, "GET", f"{folder}/MLmodel").content == payload
    response = mlflow.set_alias(ALICE, name, version, "production")
    assert response.status_code == 403
    assert "listing differs" in response.json()["message"]
    assert _audit(mamori, "mlflow-drift", name)


def test_a_same_size_replacement_under_a_protected_alias_is_found_by_re_hashing(
    stack, register_model, unique
):
    mlflow, mamori = stack
    name = unique("samesize")
    version = _approved(mamori, register_model, name)
    assert mlflow.set_alias(ALICE, name, version, "production").status_code == 200
    folder = _artifact_path(mlflow.url, name, version)
    original = mlflow.rest(ALICE, "GET", f"{folder}/MLmodel").content
    forged = bytes(reversed(original))
    assert mlflow.rest(ALICE, "PUT", f"{folder}/MLmodel", content=forged).is_success
    assert mlflow.rest(ALICE, "GET", f"{folder}/MLmodel").content == forged
    # Same size: the listing matches, which is why protected versions are re-hashed.
    settings = mamori.settings.model_copy(update={"mlflow_reverify_minutes": 0})
    assert build_integration(settings, mamori.lifecycle).sweep().drifted >= 1
    assert _alias_of(mlflow.url, name, "production") is None
    (drift,) = _audit(mamori, "mlflow-drift", name)
    assert "MLmodel sha256" in drift.reason
    assert _audit(mamori, "mlflow-alias-removed", name)


# --- 4. the sweep reads aliases where MLflow returns them -----------------------------------


def test_an_alias_set_while_mamori_was_down_on_a_server_without_the_plugin_is_removed(
    stack, plain, register_model, unique
):
    _, mamori = stack
    name = unique("down")
    version = register_model(name, malicious=True, tracking_uri=plain.url)
    assert plain.set_alias(name, version, "production").is_success  # nothing stops it
    # MLflow 3's version search reports no aliases; the sweep must not rely on it.
    client = MlflowClient(tracking_uri=plain.url, registry_uri=plain.url)
    assert client.search_model_versions(f"name = '{name}'")[0].aliases == []
    report = plain.integration(mamori).sweep()
    assert report.protected_denied >= 1
    assert _alias_of(plain.url, name, "production") is None
    (removed,) = _audit(mamori, "mlflow-alias-removed", name)
    assert removed.reason.startswith("sweep:")


# --- 5. the prompt tag ----------------------------------------------------------------------


def test_a_version_prompt_tag_does_not_hide_a_production_stage_from_the_sweep(
    stack, plain, register_model, unique
):
    _, mamori = stack
    name = unique("ptag")
    benign = register_model(name, malicious=False, tracking_uri=plain.url)
    evil = register_model(name, malicious=True, tracking_uri=plain.url)
    tag = {"name": name, "version": benign, "key": PROMPT_TAG, "value": "true"}
    assert plain.rest("POST", "/api/2.0/mlflow/model-versions/set-tag", json=tag).is_success
    body = {"name": name, "version": evil, "stage": "Production"}
    assert plain.rest("POST", STAGE, json=body).is_success
    client = MlflowClient(tracking_uri=plain.url, registry_uri=plain.url)
    assert client.search_model_versions(f"name = '{name}'") == []  # the whole model is hidden
    plain.integration(mamori).sweep()
    assert _stage_of(plain.url, name, evil) == "Archived"
    assert _audit(mamori, "mlflow-stage-removed", name)


def test_a_registered_model_prompt_tag_does_not_hide_its_alias_from_the_sweep(
    stack, plain, register_model, unique
):
    _, mamori = stack
    name = unique("rmtag")
    version = register_model(name, malicious=True, tracking_uri=plain.url)
    tag = {"name": name, "key": PROMPT_TAG, "value": "true"}
    assert plain.rest("POST", "/api/2.0/mlflow/registered-models/set-tag", json=tag).is_success
    assert plain.set_alias(name, version, "champion").is_success
    plain.integration(mamori).sweep()
    assert _alias_of(plain.url, name, "champion") is None
    assert _audit(mamori, "mlflow-alias-removed", name)


def test_a_prompt_alias_event_is_checked_like_a_model_alias_event(stack, register_model, unique):
    mlflow, mamori = stack
    name = unique("palias")
    version = _approved(mamori, register_model, name)
    assert mlflow.set_alias(ADMIN, name, version, "production").status_code == 200
    tag = {"name": name, "key": PROMPT_TAG, "value": "true"}
    assert mlflow.rest(
        ADMIN, "POST", "/api/2.0/mlflow/registered-models/set-tag", json=tag
    ).is_success
    mamori.reject_own_file(name, version)
    # MLflow sends prompt_alias.created (not model_version_alias.created) for a tagged model.
    delivered = _deliver(
        mamori, "prompt_alias", "created", name=name, alias="production", version=version
    )
    assert delivered.status_code == 202
    assert delivered.json()["event"] == "prompt_alias.created"
    _wait(lambda: _alias_of(mlflow.url, name, "production") is None, "the alias was not removed")
    assert _audit(mamori, "mlflow-alias-removed", name)


# --- upgrades -------------------------------------------------------------------------------


def test_a_protected_version_bound_before_identities_is_rebound_before_its_alias_is_checked(
    stack, register_model, unique
):
    mlflow, mamori = stack
    name = unique("legacy")
    version = _approved(mamori, register_model, name)
    assert mlflow.set_alias(ALICE, name, version, "production").status_code == 200
    with mamori.store.write() as session:  # as revision 0004 leaves a row made before it
        row = session.execute(
            select(MlflowVersionRow).where(MlflowVersionRow.name == name)
        ).scalar_one()
        row.identity, row.manifest = None, None
    queued: list[tuple[str, str]] = []
    integration = build_integration(mamori.settings, mamori.lifecycle)
    integration.sweep(resolve=lambda n, v, _force: queued.append((n, v)))
    assert (name, version) not in queued  # bound in the sweep itself, not left to the queue
    assert _alias_of(mlflow.url, name, "production") == version
    assert not _audit(mamori, "mlflow-alias-removed", name)
