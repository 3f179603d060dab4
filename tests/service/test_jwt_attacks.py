"""The JWT attack suite through HTTP: every variant is a 401 before any handler runs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from types import SimpleNamespace
from typing import Annotated

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import Depends
from fastapi.testclient import TestClient

from mamori.config import load_settings
from mamori.identity import DevIssuer, Principal
from mamori.identity.network import RouteGroup
from mamori.service import ScanMode, create_app
from mamori.service.auth import current_principal, network_guard

ISS = "https://idp.test"
AUD = "mamori"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def idp(tmp_path_factory) -> DevIssuer:
    return DevIssuer(tmp_path_factory.mktemp("idp"), issuer=ISS, audience=AUD, algorithm="RS256")


@pytest.fixture(scope="module")
def rogue(tmp_path_factory) -> DevIssuer:
    """Another tenant's identity provider: same claims, its own key."""
    return DevIssuer(tmp_path_factory.mktemp("rogue"), issuer=ISS, audience=AUD, algorithm="RS256")


@pytest.fixture(scope="module")
def served(tmp_path_factory, idp):
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp("data"),
        dev_issuer=False,
        oidc_issuer=ISS,
        jwks_file=idp.jwks_path,
        jwt_algorithms=frozenset({"RS256"}),
    )
    app = create_app(settings, scan_mode=ScanMode.INLINE)
    calls: list[str] = []

    @app.get("/v1/probe", dependencies=[Depends(network_guard(RouteGroup.API))])
    def probe(principal: Annotated[Principal, Depends(current_principal)]) -> dict[str, str]:
        calls.append(principal.subject)
        return {"subject": principal.subject}

    with TestClient(app, client=("127.0.0.1", 40000)) as client:
        yield client, calls


def _claims(**overrides) -> dict:
    now = int(time.time())
    claims = {"iss": ISS, "aud": AUD, "sub": "mallory", "iat": now, "exp": now + 300}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(issuer: DevIssuer, claims: dict, **headers) -> str:
    return jwt.encode(
        claims, issuer._private, algorithm="RS256", headers={"kid": issuer.kid, **headers}
    )


def _alg_none(idp: DevIssuer) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': idp.kid})}.{_b64(_claims())}."


def _hs256_with_public_key(idp: DevIssuer) -> str:
    # CVE-2016-10555 style key confusion: HMAC keyed with the RSA public key the server holds.
    pem = idp._private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head, body = _b64({"alg": "HS256", "typ": "JWT", "kid": idp.kid}), _b64(_claims())
    sig = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


ATTACKS = {
    "alg none": lambda k: _alg_none(k.idp),
    "HS256 signed with the RSA public key": lambda k: _hs256_with_public_key(k.idp),
    "expired": lambda k: _signed(
        k.idp, _claims(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    ),
    "nbf in the future": lambda k: _signed(k.idp, _claims(nbf=int(time.time()) + 3600)),
    "missing exp": lambda k: _signed(k.idp, _claims(exp=None)),
    "wrong aud": lambda k: _signed(k.idp, _claims(aud="another-service")),
    "wrong iss": lambda k: _signed(k.idp, _claims(iss="https://evil.test")),
    "unknown kid": lambda k: _signed(k.idp, _claims(), kid="no-such-key"),
    "jku header": lambda k: _signed(k.idp, _claims(), jku="https://evil.test/jwks.json"),
    "x5u header": lambda k: _signed(k.idp, _claims(), x5u="https://evil.test/cert.pem"),
    "another issuer's key": lambda k: _signed(k.rogue, _claims()),
    "another issuer's key under our kid": lambda k: _signed(k.rogue, _claims(), kid=k.idp.kid),
    "another tenant's issuer": lambda k: _signed(
        k.rogue, _claims(iss="https://other-tenant.idp.test")
    ),
    "signature stripped": lambda k: _signed(k.idp, _claims()).rsplit(".", 1)[0] + ".",
    "payload swapped after signing": lambda k: ".".join(
        [
            _signed(k.idp, _claims()).split(".")[0],
            _b64(_claims(sub="admin", roles=["admin"])),
            _signed(k.idp, _claims()).split(".")[2],
        ]
    ),
    "garbage": lambda _k: "not-a-jwt",
}


def test_a_valid_token_reaches_the_handler(served, idp):
    client, calls = served
    calls.clear()
    r = client.get("/v1/probe", headers={"Authorization": f"Bearer {_signed(idp, _claims())}"})
    assert r.status_code == 200
    assert calls == ["mallory"]


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_each_jwt_attack_is_a_401_before_any_handler_runs(served, idp, rogue, attack):
    client, calls = served
    calls.clear()
    token = ATTACKS[attack](SimpleNamespace(idp=idp, rogue=rogue))
    r = client.get("/v1/probe", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    assert calls == []
    body = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"] == "Bearer"
    assert body["status"] == 401
    assert body["title"] == "Unauthorized"
    assert body["detail"]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer   ",
        "Basic YWxpY2U6cGFzcw==",
        "Token abc",
        "bearer " + "x" * 20000,
    ],
)
def test_a_missing_or_malformed_authorization_header_is_a_401(served, header):
    client, calls = served
    calls.clear()
    headers = {} if header is None else {"Authorization": header}
    r = client.get("/v1/probe", headers=headers)
    assert r.status_code == 401
    assert calls == []


@pytest.mark.parametrize(
    ("attack", "expected"),
    [
        ("alg none", "algorithm"),
        ("jku header", "jku"),
        ("x5u header", "x5u"),
        ("unknown kid", "key id"),
        ("expired", "verification failed"),
    ],
)
def test_the_401_body_names_what_was_wrong(served, idp, rogue, attack, expected):
    client, _ = served
    r = client.get(
        "/v1/probe",
        headers={
            "Authorization": f"Bearer {ATTACKS[attack](SimpleNamespace(idp=idp, rogue=rogue))}"
        },
    )
    assert expected in r.json()["detail"]


def test_a_rejected_upload_stores_nothing(served, idp):
    client, _ = served
    forged = _alg_none(idp)
    r = client.post(
        "/v1/artifacts?name=x.pkl",
        content=b"\x80\x04K\x01.",
        headers={"Authorization": f"Bearer {forged}"},
    )
    assert r.status_code == 401
    good = _signed(idp, _claims(sub="vera", roles=["viewer"]))
    listing = client.get("/v1/artifacts", headers={"Authorization": f"Bearer {good}"})
    assert listing.json()["total"] == 0
