"""The configured amr-style claim, and only it, decides the principal's MFA attribute."""

from __future__ import annotations

import pytest

from mamori.identity import DevIssuer, JwksSource, VerifierConfig, verify_token
from mamori.lifecycle import has_mfa


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    return DevIssuer(tmp_path_factory.mktemp("iss"), issuer="https://idp", audience="app")


@pytest.fixture(scope="module")
def config(issuer):
    return VerifierConfig(
        issuer="https://idp",
        audience="app",
        jwks=JwksSource(path=issuer.jwks_path),
        attribute_claims=frozenset({"mfa"}),
        mfa_claim="amr",
        mfa_value="mfa",
    )


@pytest.mark.parametrize(
    ("amr", "expected"),
    [
        (["pwd", "mfa"], True),
        (["pwd"], False),
        ("mfa", True),
        ([], False),
        (None, False),
        (7, False),
    ],
)
def test_mfa_follows_the_amr_claim(issuer, config, amr, expected):
    claims = {} if amr is None else {"amr": amr}
    principal = verify_token(issuer.mint("alice", claims=claims), config)
    assert has_mfa(principal) is expected
    assert principal.attributes["mfa"] == ("true" if expected else "false")


def test_a_plain_mfa_claim_cannot_assert_mfa(issuer, config):
    principal = verify_token(issuer.mint("alice", claims={"mfa": "true", "amr": ["pwd"]}), config)
    assert not has_mfa(principal)


def test_without_an_mfa_claim_configured_no_mfa_attribute_is_set(issuer):
    config = VerifierConfig(
        issuer="https://idp", audience="app", jwks=JwksSource(path=issuer.jwks_path)
    )
    principal = verify_token(issuer.mint("alice", claims={"amr": ["mfa"]}), config)
    assert "mfa" not in principal.attributes
