"""The MLflow routes through FastAPI's test client (no MLflow server)."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from fastapi.testclient import TestClient

from mamori.config import load_settings
from mamori.identity.apitokens import Scope
from mamori.lifecycle.mlflow.events import build_integration
from mamori.lifecycle.mlflow.webhook import sign
from mamori.lifecycle.queue import make_queue
from mamori.service import ScanMode, create_app
from mamori.service.runtime import dev_issuer

SECRET = "route-secret"


@pytest.fixture
def client(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data", mlflow_webhook_secret=SECRET)
    issuer = dev_issuer(settings)
    rung: list[str] = []
    app = create_app(settings, scan_mode=ScanMode.INLINE, mlflow_doorbell=rung.append)
    with TestClient(app, client=("127.0.0.1", 50000)) as c:
        c.rung = rung
        c.runtime = app.state.runtime
        c.mint = lambda sub, *roles, mfa=True: {
            "Authorization": "Bearer "
            + issuer.mint(sub, roles=roles, claims={"amr": ["pwd", "mfa"] if mfa else ["pwd"]})
        }
        yield c


def _signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    delivery, ts = str(uuid.uuid4()), str(int(time.time()))
    return {
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": sign(secret.encode(), delivery, ts, body),
        "Content-Type": "application/json",
    }


def _alias_event() -> bytes:
    data = {"name": "m", "alias": "production", "version": "1"}
    return json.dumps({"entity": "model_version_alias", "action": "created", "data": data}).encode()


def test_an_accepted_delivery_answers_202_and_rings_the_doorbell(client):
    body = _alias_event()
    headers = _signed(body)
    response = client.post("/v1/hooks/mlflow", content=body, headers=headers)
    assert response.status_code == 202
    assert client.rung == [headers["X-MLflow-Delivery-Id"]]


def test_with_the_job_queue_each_delivery_becomes_a_worker_task(tmp_path):
    # The API process only stores the delivery and enqueues it; a worker does the work.
    settings = load_settings(
        data_dir=tmp_path / "data",
        mlflow_webhook_secret=SECRET,
        mlflow_tracking_uri="http://127.0.0.1:9",  # never contacted: the event needs no lookup
    )
    app = create_app(settings, scan_mode=ScanMode.QUEUE)
    data = {"name": "m", "description": "", "tags": {}}
    body = json.dumps({"entity": "registered_model", "action": "created", "data": data}).encode()
    headers = _signed(body)
    with TestClient(app, client=("127.0.0.1", 50000)) as c:
        assert c.post("/v1/hooks/mlflow", content=body, headers=headers).status_code == 202
        integration = build_integration(settings, app.state.runtime.lifecycle)
        assert integration.pending() == [headers["X-MLflow-Delivery-Id"]]
    huey = make_queue(settings).huey
    (task,) = huey.pending()
    assert task.name == "mamori.mlflow.delivery"
    assert task.args == (headers["X-MLflow-Delivery-Id"],)
    huey.execute(task)
    assert integration.pending() == []


def test_a_rejected_delivery_is_a_401_problem_and_rings_nothing(client):
    body = _alias_event()
    response = client.post("/v1/hooks/mlflow", content=body, headers=_signed(body, "wrong"))
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert client.rung == []


def test_a_signed_body_that_is_not_an_mlflow_envelope_is_a_400(client):
    body = b'{"hello": "world"}'
    assert client.post("/v1/hooks/mlflow", content=body, headers=_signed(body)).status_code == 400


def test_an_oversized_delivery_is_refused_before_it_is_read(client):
    body = b"x" * ((1 << 20) + 1)
    assert client.post("/v1/hooks/mlflow", content=body, headers=_signed(body)).status_code == 413


def test_the_binding_gate_denies_a_version_mamori_never_saw(client):
    token = client.runtime.tokens.create(
        name="g", subject="gate", roles=(), scopes=(Scope.GATE,), created_by="t"
    )
    response = client.get(
        "/v1/gate/binding",
        params={"name": "m", "version": "1", "target": "production", "actor": "alice"},
        headers={"Authorization": f"Bearer {token.secret}"},
    )
    assert response.status_code == 200
    assert response.json()["allowed"] is False
    assert "never been scanned" in response.json()["reason"]


def test_the_binding_gate_needs_the_gate_scope(client):
    token = client.runtime.tokens.create(
        name="r", subject="reader", roles=("viewer",), scopes=(Scope.READ,), created_by="t"
    )
    response = client.get(
        "/v1/gate/binding",
        params={"name": "m", "version": "1", "target": "production"},
        headers={"Authorization": f"Bearer {token.secret}"},
    )
    assert response.status_code == 403


def _grant(client, headers, reason="incident 7"):
    body = {"name": "m", "version": "1", "alias": "production", "reason": reason, "minutes": 5}
    return client.post("/v1/hooks/mlflow/break-glass", json=body, headers=headers)


def test_break_glass_is_refused_without_mfa(client):
    assert _grant(client, client.mint("root", "admin", mfa=False)).status_code == 403


def test_break_glass_is_refused_to_non_admins(client):
    assert _grant(client, client.mint("paula", "approver")).status_code == 403


def test_a_break_glass_grant_makes_the_gate_allow_that_exact_alias(client):
    assert _grant(client, client.mint("root", "admin")).status_code == 201
    token = client.runtime.tokens.create(
        name="g", subject="gate", roles=(), scopes=(Scope.GATE,), created_by="t"
    )
    auth = {"Authorization": f"Bearer {token.secret}"}
    allowed = client.get(
        "/v1/gate/binding",
        params={"name": "m", "version": "1", "target": "Production"},
        headers=auth,
    ).json()
    other = client.get(
        "/v1/gate/binding",
        params={"name": "m", "version": "1", "target": "champion"},
        headers=auth,
    ).json()
    assert allowed["allowed"] is True
    assert allowed["break_glass"] is True
    assert other["allowed"] is False
