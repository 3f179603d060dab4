"""Attack 7: JWT variants. Every one must raise IdentityError."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st

from mamori.errors import IdentityError
from mamori.identity import DevIssuer, JwksSource, VerifierConfig, verify_token


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    return DevIssuer(tmp_path_factory.mktemp("iss"), issuer="https://idp", audience="app")


@pytest.fixture(scope="module")
def config(issuer):
    return VerifierConfig(
        issuer="https://idp", audience="app", jwks=JwksSource(path=issuer.jwks_path)
    )


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_a_valid_token_yields_its_principal(issuer, config):
    principal = verify_token(issuer.mint("alice", roles=["doctor"], tenant="t1"), config)
    assert (principal.subject, principal.tenant, principal.roles) == ("alice", "t1", {"doctor"})


def test_07_alg_none_is_refused(issuer, config):
    now = int(time.time())
    claims = {"sub": "x", "iss": "https://idp", "aud": "app", "iat": now, "exp": now + 60}
    token = f"{_b64({'alg': 'none', 'kid': issuer.kid})}.{_b64(claims)}."
    with pytest.raises(IdentityError):
        verify_token(token, config)


def test_07_hs256_key_confusion_with_the_public_key_is_refused(issuer, config):
    public_pem = issuer._private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    claims = {"sub": "x", "iss": "https://idp", "aud": "app", "iat": now, "exp": now + 60}
    # PyJWT itself refuses PEM keys as HMAC secrets, so build the HMAC by hand.
    import hashlib
    import hmac

    head = _b64({"alg": "HS256", "kid": issuer.kid})
    body = _b64(claims)
    sig = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    token = f"{head}.{body}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"
    with pytest.raises(IdentityError, match="algorithm"):
        verify_token(token, config)


def test_07_missing_exp_is_refused(issuer, config):
    token = issuer.mint("alice", claims={"exp": None})
    with pytest.raises(IdentityError):
        verify_token(token, config)


def test_07_expired_token_is_refused(issuer, config):
    with pytest.raises(IdentityError):
        verify_token(issuer.mint("alice", ttl_seconds=-120), config)


@pytest.mark.parametrize("claim", [{"aud": "other-app"}, {"iss": "https://evil"}])
def test_07_wrong_audience_or_issuer_is_refused(issuer, config, claim):
    with pytest.raises(IdentityError):
        verify_token(issuer.mint("alice", claims=claim), config)


@pytest.mark.parametrize("header", ["jku", "x5u", "jwk"])
def test_07_tokens_naming_their_own_key_are_refused(issuer, config, header):
    token = issuer.mint("alice", headers={header: "https://evil/keys.json"})
    with pytest.raises(IdentityError, match=header):
        verify_token(token, config)


@given(
    head=st.one_of(
        st.text(max_size=40),
        st.recursive(st.none() | st.integers() | st.text(max_size=5), st.lists).map(
            lambda v: _b64({"v": v}) if isinstance(v, list) else _b64({"alg": v})
        ),
        st.just(base64.urlsafe_b64encode(b"[1]").decode()),
    ),
    rest=st.sampled_from(["", ".", ".e30.sig", ".e30"]),
)
def test_07_a_malformed_token_is_refused_with_identity_error_only(issuer, config, head, rest):
    with pytest.raises(IdentityError):
        verify_token(head + rest, config)


def test_07_a_header_with_junk_characters_is_refused(issuer, config):
    head, _, tail = issuer.mint("alice").partition(".")
    with pytest.raises(IdentityError, match="malformed"):
        verify_token(f"{head[:4]}!{head[4:]}.{tail}", config)


def test_07_a_token_signed_by_another_key_with_the_same_kid_is_refused(issuer, config, tmp_path):
    rogue = DevIssuer(tmp_path / "rogue", issuer="https://idp", audience="app")
    token = jwt.encode(
        {
            "sub": "x",
            "iss": "https://idp",
            "aud": "app",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        },
        rogue._private,
        algorithm="ES256",
        headers={"kid": issuer.kid},
    )
    with pytest.raises(IdentityError):
        verify_token(token, config)


def test_07_unknown_kid_is_refused(issuer, config):
    with pytest.raises(IdentityError, match="key id"):
        verify_token(issuer.mint("a", headers={"kid": "nope"}), config)


def test_09_unreadable_jwks_fails_closed(issuer, tmp_path):
    cfg = VerifierConfig(
        issuer="https://idp", audience="app", jwks=JwksSource(path=tmp_path / "missing.json")
    )
    with pytest.raises(IdentityError):
        verify_token(issuer.mint("a"), cfg)


def test_09_jwks_url_that_errors_fails_closed(issuer):
    import httpx

    client = httpx.Client(transport=httpx.MockTransport(lambda _r: httpx.Response(500)))
    cfg = VerifierConfig(
        issuer="https://idp", audience="app", jwks=JwksSource(url="https://idp/jwks", client=client)
    )
    with pytest.raises(IdentityError):
        verify_token(issuer.mint("a"), cfg)


def test_jwks_url_serves_keys_through_an_injected_client(issuer):
    import httpx

    body = issuer.jwks_path.read_text()
    client = httpx.Client(transport=httpx.MockTransport(lambda _r: httpx.Response(200, text=body)))
    cfg = VerifierConfig(
        issuer="https://idp", audience="app", jwks=JwksSource(url="https://idp/jwks", client=client)
    )
    assert verify_token(issuer.mint("a"), cfg).subject == "a"


def test_symmetric_algorithms_cannot_be_configured(issuer):
    with pytest.raises(IdentityError):
        VerifierConfig(
            issuer="i",
            audience="a",
            jwks=JwksSource(path=issuer.jwks_path),
            algorithms=frozenset({"HS256"}),
        )


def test_overlong_token_lifetime_is_refused(issuer, config):
    with pytest.raises(IdentityError, match="lifetime"):
        verify_token(issuer.mint("a", ttl_seconds=10 * 24 * 3600), config)


def test_identity_public_api_matches_all():
    import mamori.identity as mod

    public = {
        n
        for n in dir(mod)
        if not n.startswith("_")
        and n
        not in {
            "annotations",
            "apitokens",
            "claims",
            "issuer",
            "jwks",
            "jwt",
            "network",
            "principal",
            "subjects",
        }
    }
    assert public == set(mod.__all__)
