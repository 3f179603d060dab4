"""API tokens, IP allow lists, trusted proxies, health, metrics, docs and logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated

import pytest
import structlog
from fastapi import Depends
from fastapi.testclient import TestClient
from sqlalchemy import update

from mamori.config import load_settings
from mamori.identity import Principal
from mamori.identity.network import RouteGroup
from mamori.service import ScanMode, create_app
from mamori.service.auth import current_principal, network_guard
from mamori.store.models import ApiTokenRow

SHA = "0" * 64


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _create_token(client, mint, **body) -> dict:
    r = client.post("/v1/admin/tokens", json=body, headers=bearer(mint("root", "admin")))
    assert r.status_code == 201, r.text
    return r.json()


def test_an_admin_creates_an_api_token_that_works_for_its_scope(client, mint):
    made = _create_token(client, mint, name="ci-gate", roles=["deployer"], scopes=["gate"])
    assert made["token"].startswith("mamori_")
    assert made["subject"] == "ci:ci-gate"
    r = client.get("/v1/gate", params={"digest": SHA}, headers=bearer(made["token"]))
    assert r.status_code == 200
    assert r.json()["allowed"] is False


def test_an_api_token_with_the_wrong_scope_is_a_403_naming_the_scope(client, mint):
    made = _create_token(client, mint, name="ci-gate", roles=["viewer"], scopes=["gate"])
    r = client.get("/v1/artifacts", headers=bearer(made["token"]))
    assert r.status_code == 403
    assert r.json()["policy_ids"] == ["api-token-scope-read"]
    assert "'read' scope" in r.json()["detail"]


def test_a_revoked_api_token_is_a_401(client, mint):
    made = _create_token(client, mint, name="ci", scopes=["gate"])
    gone = client.delete(f"/v1/admin/tokens/{made['id']}", headers=bearer(mint("root", "admin")))
    assert gone.status_code == 200
    assert gone.json()["revoked_at"] is not None
    r = client.get("/v1/gate", params={"digest": SHA}, headers=bearer(made["token"]))
    assert r.status_code == 401
    assert "revoked" in r.json()["detail"]


def test_an_expired_api_token_is_a_401(client, mint, app):
    made = _create_token(client, mint, name="ci", scopes=["gate"], ttl_seconds=60)
    with app.state.runtime.store.write() as session:
        session.execute(
            update(ApiTokenRow).values(expires_at=datetime.now(UTC) - timedelta(seconds=5))
        )
    r = client.get("/v1/gate", params={"digest": SHA}, headers=bearer(made["token"]))
    assert r.status_code == 401
    assert "expired" in r.json()["detail"]


def test_an_unknown_api_token_is_a_401(client):
    r = client.get("/v1/gate", params={"digest": SHA}, headers=bearer("mamori_" + "A" * 43))
    assert r.status_code == 401


def test_token_listing_never_shows_secrets(client, mint):
    made = _create_token(client, mint, name="ci", scopes=["read"])
    listing = client.get("/v1/admin/tokens", headers=bearer(mint("root", "admin")))
    assert listing.status_code == 200
    assert made["token"] not in listing.text
    assert [t["name"] for t in listing.json()] == ["ci"]


def test_only_admins_manage_tokens(client, mint):
    r = client.post(
        "/v1/admin/tokens",
        json={"name": "x", "scopes": ["read"]},
        headers=bearer(mint("alice", "approver")),
    )
    assert r.status_code == 403


def test_an_api_token_cannot_approve_because_it_is_never_mfa(client, mint, upload):
    import pickle

    sha = upload(pickle.dumps({"w": [1]}))
    made = _create_token(client, mint, name="ci", roles=["approver"], scopes=["decide"])
    r = client.post(f"/v1/artifacts/{sha}/approve", headers=bearer(made["token"]))
    assert r.status_code == 403
    assert r.json()["policy_ids"] == ["mfa-required"]


def test_an_unknown_scope_is_a_422(client, mint):
    r = client.post(
        "/v1/admin/tokens",
        json={"name": "x", "scopes": ["everything"]},
        headers=bearer(mint("root", "admin")),
    )
    assert r.status_code == 422
    assert "scopes" in r.json()["detail"]


# --- network ----------------------------------------------------------------------------------


@pytest.fixture
def guarded(tmp_path, issuer):
    settings = load_settings(
        data_dir=tmp_path / "data",
        allow_api=("198.51.100.0/24",),
        allow_admin=("198.51.100.7/32",),
        trusted_proxies=("10.0.0.0/24",),
    )
    app = create_app(settings, scan_mode=ScanMode.INLINE)
    calls: list[str] = []

    @app.get("/v1/probe", dependencies=[Depends(network_guard(RouteGroup.API))])
    def probe(principal: Annotated[Principal, Depends(current_principal)]) -> dict[str, str]:
        calls.append(principal.subject)
        return {"ok": "yes"}

    return app, calls


def _client(app, host: str) -> TestClient:
    return TestClient(app, client=(host, 4242))


def test_a_client_outside_the_api_list_is_a_403_before_any_handler_runs(guarded, mint):
    app, calls = guarded
    with _client(app, "203.0.113.9") as client:
        r = client.get("/v1/probe", headers=bearer(mint("alice", "viewer")))
    assert r.status_code == 403
    assert r.json()["policy_ids"] == ["allow-api"]
    assert calls == []


def test_the_network_check_comes_before_authentication(guarded):
    app, _ = guarded
    with _client(app, "203.0.113.9") as client:
        r = client.get("/v1/probe")
    assert r.status_code == 403


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(guarded, mint):
    app, calls = guarded
    with _client(app, "203.0.113.9") as client:
        r = client.get(
            "/v1/probe",
            headers={**bearer(mint("a", "viewer")), "X-Forwarded-For": "198.51.100.7"},
        )
    assert r.status_code == 403
    assert calls == []


def test_a_trusted_proxy_forwards_an_allowed_client(guarded, mint):
    app, calls = guarded
    with _client(app, "10.0.0.2") as client:
        r = client.get(
            "/v1/probe",
            headers={**bearer(mint("a", "viewer")), "X-Forwarded-For": "198.51.100.9"},
        )
    assert r.status_code == 200
    assert calls == ["a"]


def test_a_trusted_proxy_forwarding_a_disallowed_client_is_a_403(guarded, mint):
    app, _ = guarded
    with _client(app, "10.0.0.2") as client:
        r = client.get(
            "/v1/probe",
            headers={**bearer(mint("a", "viewer")), "X-Forwarded-For": "198.51.100.7, 203.0.113.9"},
        )
    assert r.status_code == 403


def test_admin_routes_also_need_the_admin_list(guarded, mint):
    app, _ = guarded
    root = bearer(mint("root", "admin"))
    with _client(app, "198.51.100.9") as client:
        assert client.get("/v1/admin/tokens", headers=root).status_code == 403
        assert client.post(f"/v1/artifacts/{SHA}/override", headers=root).status_code == 403
    with _client(app, "198.51.100.7") as client:
        assert client.get("/v1/admin/tokens", headers=root).status_code == 200


def test_health_is_open_to_every_address(guarded):
    app, _ = guarded
    with _client(app, "203.0.113.9") as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}


# --- health, metrics, docs, logs --------------------------------------------------------------


def test_readyz_is_503_when_the_store_is_gone(client, app):
    app.state.runtime.store.ping()
    app.state.runtime.store.engine.dispose()
    original = app.state.runtime.store.ping

    def broken() -> None:
        from mamori.errors import StoreError

        raise StoreError("reading the store failed")

    object.__setattr__(app.state.runtime.store, "ping", broken)
    try:
        r = client.get("/readyz")
    finally:
        object.__setattr__(app.state.runtime.store, "ping", original)
    assert r.status_code == 503
    assert r.json()["detail"] == "reading the store failed"


def test_metrics_count_requests_by_route_and_decisions_by_effect(client, mint):
    client.get("/v1/gate", params={"digest": SHA}, headers=bearer(mint("d", "deployer")))
    client.get("/v1/artifacts", headers=bearer(mint("nobody")))
    text = client.get("/metrics").text
    assert 'mamori_http_requests_total{method="GET",route="/v1/gate",status="200"} 1.0' in text
    assert 'mamori_decisions_total{action="gate-deploy",effect="deny"} 1.0' in text
    assert 'mamori_decisions_total{action="view",effect="deny"} 1.0' in text
    assert "mamori_http_request_duration_seconds_bucket" in text


def test_metrics_count_scans_by_verdict(client, upload):
    import pickle

    upload(pickle.dumps([1, 2, 3]))
    assert 'mamori_scans{status="done",verdict="safe"} 1.0' in client.get("/metrics").text


def test_the_openapi_document_lists_the_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/artifacts", "/v1/gate", "/v1/admin/audit", "/v1/admin/tokens"):
        assert path in paths
    assert client.get("/docs").status_code == 200


def test_every_response_carries_a_request_id(client):
    assert len(client.get("/healthz").headers["x-request-id"]) == 32
    echoed = client.get("/healthz", headers={"X-Request-ID": "trace-123"})
    assert echoed.headers["x-request-id"] == "trace-123"
    hostile = client.get("/healthz", headers={"X-Request-ID": "a b;\\x7f"})
    assert len(hostile.headers["x-request-id"]) == 32


def test_the_access_log_names_the_subject_and_never_the_token(client, mint):
    token = mint("alice", "viewer")
    with structlog.testing.capture_logs() as logs:
        client.get("/v1/artifacts", headers=bearer(token))
    entry = next(e for e in logs if e["event"] == "request")
    assert entry["subject"] == "alice"
    assert entry["route"] == "/v1/artifacts"
    assert entry["status"] == 200
    assert "latency_ms" in entry
    assert token not in json.dumps(logs, default=str)
