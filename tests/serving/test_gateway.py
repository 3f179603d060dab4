"""The inference gateway: identity, Cedar invoke with lineage, MLDR standing, buckets, hardening.

Real components: JWTs from the development issuer verified by the service's code, the packaged
Cedar policies through cedarpy, a hash-chained audit log, and (in one test) a model loaded in
the bubblewrap sandbox. HTTP goes through FastAPI's TestClient.
"""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mamori.audit import AuditChain, MemorySink, verify_chain
from mamori.identity import ClaimMapping, DevIssuer, JwksSource, VerifierConfig
from mamori.serving import start
from mamori.serving.gateway import (
    Gateway,
    GatewayConfig,
    ModelCard,
    OutputPolicy,
    TokenBucket,
    authenticator,
    create_app,
)
from mamori.serving.mldr import Detector, MldrConfig, Monitor, Response

DIGEST = "a" * 64
PHI = ModelCard("triage", DIGEST, frozenset({"phi"}))
PLAIN = ModelCard("digits", DIGEST)


class _Scores:
    """A stand-in for the sandboxed model: three-class scores, deterministic in the input."""

    def predict(self, inputs: list[list[float]]) -> list[list[float]]:
        return [[0.12345, 0.8, 0.07655] if sum(row) >= 0 else [0.7, 0.2, 0.1] for row in inputs]


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> DevIssuer:
    return DevIssuer(tmp_path_factory.mktemp("iss"), issuer="https://idp", audience="app")


@pytest.fixture(scope="module")
def verifier(issuer: DevIssuer) -> VerifierConfig:
    mapping = ClaimMapping(
        roles={"roles": {"invoker": {"invoker"}, "viewer": {"viewer"}}},
        attributes={"entitlements": "entitlements"},
    )
    return VerifierConfig(
        issuer="https://idp", audience="app", jwks=JwksSource(path=issuer.jwks_path), claims=mapping
    )


def _gateway(
    verifier: VerifierConfig,
    card: ModelCard = PLAIN,
    *,
    model: Any = None,
    config: GatewayConfig | None = None,
    monitor: Monitor | None = None,
    clock: _Clock | None = None,
) -> tuple[Gateway, TestClient, AuditChain]:
    audit = AuditChain(MemorySink())
    gateway = Gateway(
        model or _Scores(),
        card,
        authenticate=authenticator(verifier),
        audit=audit,
        monitor=monitor,
        config=config,
        clock=clock or _Clock(),
    )
    return gateway, TestClient(create_app(gateway)), audit


def _auth(issuer: DevIssuer, subject: str = "alice", **claims: Any) -> dict[str, str]:
    roles = claims.pop("roles", ["invoker"])
    return {"authorization": f"Bearer {issuer.mint(subject, roles=roles, claims=claims)}"}


def test_an_invoker_gets_the_model_outputs(issuer: DevIssuer, verifier: VerifierConfig) -> None:
    _, client, _ = _gateway(verifier)
    answer = client.post("/v1/invoke", json={"inputs": [[1.0, 2.0]]}, headers=_auth(issuer))
    assert answer.status_code == 200
    assert answer.json() == {"outputs": [[0.12345, 0.8, 0.07655]]}


def test_a_request_without_a_token_is_401(verifier: VerifierConfig) -> None:
    _, client, _ = _gateway(verifier)
    assert client.post("/v1/invoke", json={"inputs": [[1.0]]}).status_code == 401


def test_a_token_from_another_issuer_is_401(verifier: VerifierConfig, tmp_path: Path) -> None:
    stranger = DevIssuer(tmp_path, issuer="https://idp", audience="app")
    _, client, _ = _gateway(verifier)
    answer = client.post("/v1/invoke", json={"inputs": [[1.0]]}, headers=_auth(stranger))
    assert answer.status_code == 401


def test_a_caller_without_an_invoking_role_is_denied_and_audited(
    issuer: DevIssuer, verifier: VerifierConfig
) -> None:
    _, client, audit = _gateway(verifier)
    headers = _auth(issuer, roles=["viewer"])
    assert client.post("/v1/invoke", json={"inputs": [[1.0]]}, headers=headers).status_code == 403
    record = audit.records()[-1]
    assert (record.action, record.decision) == ("invoke", "deny")


def test_a_phi_model_refuses_a_caller_without_the_phi_entitlement(
    issuer: DevIssuer, verifier: VerifierConfig
) -> None:
    _, client, audit = _gateway(verifier, PHI)
    answer = client.post("/v1/invoke", json={"inputs": [[1.0]]}, headers=_auth(issuer))
    assert answer.status_code == 403
    assert "lineage-entitlements" in answer.json()["detail"]
    assert audit.records()[-1].policy_ids == ("lineage-entitlements",)


def test_a_phi_model_answers_a_caller_with_the_phi_entitlement(
    issuer: DevIssuer, verifier: VerifierConfig
) -> None:
    _, client, audit = _gateway(verifier, PHI)
    headers = _auth(issuer, entitlements="pii phi")
    assert client.post("/v1/invoke", json={"inputs": [[1.0]]}, headers=headers).status_code == 200
    assert audit.records()[-1].decision == "allow"
    assert verify_chain(audit.records()) == len(audit.records())


def test_entitlements_in_the_request_body_are_refused(
    issuer: DevIssuer, verifier: VerifierConfig
) -> None:
    _, client, _ = _gateway(verifier, PHI)
    body = {"inputs": [[1.0]], "entitlements": "phi"}
    assert client.post("/v1/invoke", json=body, headers=_auth(issuer)).status_code == 422


def test_a_key_over_its_bucket_gets_429_with_retry_after(
    issuer: DevIssuer, verifier: VerifierConfig
) -> None:
    clock = _Clock()
    config = GatewayConfig(key_rate=1.0, key_burst=3.0)
    _, client, _ = _gateway(verifier, config=config, clock=clock)
    headers = _auth(issuer)
    codes = [client.post("/v1/invoke", json={"inputs": [[1.0]]}, headers=headers) for _ in range(4)]
    assert [c.status_code for c in codes] == [200, 200, 200, 429]
    assert codes[-1].headers["retry-after"] == "1"
    clock.now += 1.0
    assert client.post("/v1/invoke", json={"inputs": [[1.0]]}, headers=headers).status_code == 200


def test_the_global_bucket_limits_many_keys_together(
    issuer: DevIssuer, verifier: VerifierConfig
) -> None:
    config = GatewayConfig(global_rate=1.0, global_burst=2.0)
    _, client, _ = _gateway(verifier, config=config)
    codes = [
        client.post("/v1/invoke", json={"inputs": [[1.0]]}, headers=_auth(issuer, f"u{i}"))
        for i in range(3)
    ]
    assert [c.status_code for c in codes] == [200, 200, 429]


def test_a_flood_detected_by_mldr_throttles_the_key_with_retry_after(
    issuer: DevIssuer, verifier: VerifierConfig
) -> None:
    clock = _Clock()
    monitor = Monitor(MldrConfig(flood_max=5, throttle_seconds=30), clock=clock, secret=b"t")
    _, client, audit = _gateway(verifier, monitor=monitor, clock=clock)
    headers = _auth(issuer)
    for i in range(6):
        body = {"inputs": [[float(i), 1.0]]}
        assert client.post("/v1/invoke", json=body, headers=headers).status_code == 200
    answer = client.post("/v1/invoke", json={"inputs": [[9.0, 1.0]]}, headers=headers)
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "30"
    event = audit.records()[-2]  # the flood event, then the 7th request's invoke decision
    assert event.action == "mldr.flood"
    assert event.policy_ids == ("AML.T0034.000",)
    assert 'detector="flood"' in client.get("/metrics").text


def test_a_key_blocked_by_mldr_is_refused_even_with_a_valid_token(
    issuer: DevIssuer, verifier: VerifierConfig
) -> None:
    responses = dict.fromkeys(Detector, Response.BLOCK)
    monitor = Monitor(MldrConfig(responses=responses, flood_max=2), secret=b"t")
    _, client, _ = _gateway(verifier, monitor=monitor)
    headers = _auth(issuer, "mallory")
    for i in range(3):
        client.post("/v1/invoke", json={"inputs": [[float(i)]]}, headers=headers)
    answer = client.post("/v1/invoke", json={"inputs": [[5.0]]}, headers=headers)
    assert answer.status_code == 403
    assert "blocked by MLDR" in answer.json()["detail"]
    other = client.post("/v1/invoke", json={"inputs": [[5.0]]}, headers=_auth(issuer, "bob"))
    assert other.status_code == 200


def test_top1_hardening_returns_only_the_label(issuer: DevIssuer, verifier: VerifierConfig) -> None:
    config = GatewayConfig(output=OutputPolicy(top1=True))
    _, client, _ = _gateway(verifier, config=config)
    answer = client.post("/v1/invoke", json={"inputs": [[1.0], [-1.0]]}, headers=_auth(issuer))
    assert answer.json() == {"outputs": [{"label": 1}, {"label": 0}]}


def test_rounding_hardening_rounds_the_scores(issuer: DevIssuer, verifier: VerifierConfig) -> None:
    config = GatewayConfig(output=OutputPolicy(decimals=1))
    _, client, _ = _gateway(verifier, config=config)
    answer = client.post("/v1/invoke", json={"inputs": [[1.0]]}, headers=_auth(issuer))
    assert answer.json() == {"outputs": [[0.1, 0.8, 0.1]]}


def test_mldr_sees_the_full_scores_even_when_the_caller_gets_top1(
    issuer: DevIssuer, verifier: VerifierConfig
) -> None:
    config = GatewayConfig(output=OutputPolicy(top1=True))
    gateway, client, _ = _gateway(verifier, config=config)
    seen: list[tuple[int, float | None]] = []
    original = gateway.monitor.observe

    def spy(key: str, row: Any, label: int, confidence: float | None = None) -> Any:
        seen.append((label, confidence))
        return original(key, row, label, confidence)

    gateway.monitor.observe = spy  # type: ignore[method-assign]
    client.post("/v1/invoke", json={"inputs": [[1.0]]}, headers=_auth(issuer))
    assert seen == [(1, 0.8)]


def test_a_row_of_another_width_is_422(issuer: DevIssuer, verifier: VerifierConfig) -> None:
    _, client, _ = _gateway(verifier)
    headers = _auth(issuer)
    client.post("/v1/invoke", json={"inputs": [[1.0, 2.0]]}, headers=headers)
    answer = client.post("/v1/invoke", json={"inputs": [[1.0, 2.0, 3.0]]}, headers=headers)
    assert answer.status_code == 422


def test_too_many_rows_is_413(issuer: DevIssuer, verifier: VerifierConfig) -> None:
    _, client, _ = _gateway(verifier, config=GatewayConfig(max_rows=2))
    body = {"inputs": [[1.0]] * 3}
    assert client.post("/v1/invoke", json=body, headers=_auth(issuer)).status_code == 413


def test_a_bucket_refuses_a_cost_above_its_burst_for_ever() -> None:
    assert TokenBucket(1.0, 2.0, _Clock()).take(3) == float("inf")


@pytest.fixture
def sandboxed(tmp_path: Path) -> Iterator[Any]:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap not installed")
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    with start(path, flavour="pickle") as running:
        yield running


def test_the_gateway_serves_a_model_running_in_the_sandbox(
    issuer: DevIssuer, verifier: VerifierConfig, sandboxed: Any
) -> None:
    _, client, _ = _gateway(verifier, model=sandboxed)
    answer = client.post("/v1/invoke", json={"inputs": [[0.2], [2.8]]}, headers=_auth(issuer))
    assert answer.status_code == 200
    assert answer.json() == {"outputs": [0, 1]}


class _Strings:
    def predict(self, inputs: list[list[float]]) -> list[str]:
        return ["cat"] * len(inputs)


def test_an_output_mldr_cannot_read_is_withheld_with_502(
    issuer: DevIssuer, verifier: VerifierConfig
) -> None:
    _, client, _ = _gateway(verifier, model=_Strings())
    answer = client.post("/v1/invoke", json={"inputs": [[1.0]]}, headers=_auth(issuer))
    assert answer.status_code == 502
    assert "cat" not in answer.text
