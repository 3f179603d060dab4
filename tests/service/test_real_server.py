"""Integration tests against a real uvicorn process (``mamori serve``) on a free port."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import pickle
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from mamori.audit import AuditRecord, verify_chain
from mamori.config import load_settings
from mamori.service.runtime import dev_issuer

pytestmark = pytest.mark.slow

_MAMORI = [sys.executable, "-c", "from mamori.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("server-data")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORI_")} | {
        "MAMORI_DATA_DIR": str(data),
        "MAMORI_PORT": str(port),
    }
    settings = load_settings(data_dir=data, port=port)
    issuer = dev_issuer(settings)  # creates the key pair before the server reads it
    log = (data / "server.log").open("wb")
    proc = subprocess.Popen(
        [*_MAMORI, "serve", "--scans", "inline"], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail((data / "server.log").read_text())
        time.sleep(0.2)

    def mint(subject: str, *roles: str, mfa: bool = True, **kwargs) -> dict[str, str]:
        claims = {"amr": ["pwd", "mfa"] if mfa else ["pwd"], **kwargs.pop("claims", {})}
        token = issuer.mint(subject, roles=roles, claims=claims, **kwargs)
        return {"Authorization": f"Bearer {token}"}

    yield url, mint, env, issuer
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _wait_scanned(client: httpx.Client, sha: str, headers) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        view = client.get(f"/v1/artifacts/{sha}", headers=headers).json()
        if (view.get("latest_scan") or {}).get("status") == "done":
            return view
        time.sleep(0.1)
    pytest.fail(f"{sha} was not scanned in time")


def test_the_real_server_is_healthy_and_ready(server):
    url, *_ = server
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{url}/readyz").json() == {"status": "ready"}


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_forged_tokens_are_401_through_the_real_server(server):
    url, _, _, issuer = server
    now = int(time.time())
    claims = {"iss": issuer.issuer, "aud": issuer.audience, "sub": "m", "iat": now, "exp": now + 60}
    none = f"{_b64({'alg': 'none', 'kid': issuer.kid})}.{_b64(claims)}."
    pem = issuer._private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head, body = _b64({"alg": "HS256", "kid": issuer.kid}), _b64(claims)
    sig = base64.urlsafe_b64encode(
        hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    ).rstrip(b"=")
    confused = f"{head}.{body}.{sig.decode()}"
    expired = issuer.mint("m", ttl_seconds=-3600, claims={"iat": now - 7200})
    jku = issuer.mint("m", headers={"jku": "http://127.0.0.1:1/jwks.json"})
    for token in (none, confused, expired, jku):
        r = httpx.get(f"{url}/v1/artifacts", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, token
        assert r.headers["content-type"] == "application/problem+json"


def test_twenty_parallel_uploads_lose_nothing_and_keep_the_audit_chain(server):
    url, mint, env, _ = server
    importer = mint("ivan", "importer")
    payloads = [pickle.dumps({"model": i, "weights": [i] * 8}, protocol=4) for i in range(20)]

    def _one(data: bytes) -> tuple[int, str]:
        with httpx.Client(base_url=url, timeout=60) as c:
            r = c.post("/v1/artifacts", params={"name": "par.pkl"}, content=data, headers=importer)
            return r.status_code, r.json().get("sha256", r.text)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(_one, payloads))
    assert [code for code, _ in results] == [201] * 20
    expected = {hashlib.sha256(p).hexdigest() for p in payloads}
    assert {sha for _, sha in results} == expected
    with httpx.Client(base_url=url, timeout=60) as c:
        for sha in expected:
            assert _wait_scanned(c, sha, importer)["state"] == "safe"
        listed = c.get("/v1/artifacts", params={"limit": 500}, headers=importer).json()
        assert expected <= {a["sha256"] for a in listed["items"]}
        export = c.get("/v1/admin/audit", headers=mint("root", "admin"))
    records = [AuditRecord.from_json(json.loads(x)) for x in export.text.splitlines()]
    assert verify_chain(records) == len(records)
    imports = {r.resource for r in records if r.action == "import" and r.decision == "quarantined"}
    assert expected <= imports
    check = subprocess.run(
        [*_MAMORI, "audit", "verify"], check=False, env=env, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    assert "intact" in check.stdout


def test_four_eyes_and_the_gate_through_the_real_server(server):
    url, mint, _, _ = server
    importer = mint("ivan", "importer", "approver")
    with httpx.Client(base_url=url, timeout=60) as c:
        data = pickle.dumps({"four": "eyes"}, protocol=4)
        sha = c.post("/v1/artifacts?name=fe.pkl", content=data, headers=importer).json()["sha256"]
        _wait_scanned(c, sha, importer)
        gate = c.get("/v1/gate", params={"digest": sha}, headers=mint("bot", "deployer"))
        assert (gate.status_code, gate.json()["allowed"]) == (200, False)
        self_approval = c.post(f"/v1/artifacts/{sha}/approve", headers=importer)
        assert self_approval.status_code == 403
        assert self_approval.json()["policy_ids"] == ["four-eyes"]
        ok = c.post(f"/v1/artifacts/{sha}/approve", headers=mint("alice", "approver"))
        assert ok.status_code == 200
        gate = c.get("/v1/gate", params={"digest": sha}, headers=mint("bot", "deployer"))
        assert (gate.status_code, gate.json()["allowed"]) == (200, True)


def test_a_large_upload_streams_through_the_real_server(server):
    url, mint, _, _ = server
    size = 48 << 20

    def body():
        chunk = os.urandom(1 << 20)
        for _ in range(size >> 20):
            yield chunk

    with httpx.Client(base_url=url, timeout=120) as c:
        r = c.post("/v1/artifacts?name=big.bin", content=body(), headers=mint("ivan", "importer"))
    assert r.status_code == 201, r.text
    assert r.json()["size"] == size
