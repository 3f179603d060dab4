"""Fresh-eyes red team: a withdrawn signing key must not stay valid while the JWKS is unreachable.

The IdP rotates out a leaked key; the attacker who holds it keeps mamori from reaching the
JWKS endpoint (or it is simply down). Before the fix, "a failed refresh keeps the previous
keys" had no end: tokens signed with the withdrawn key verified for ever.
"""

# ruff: noqa: N802 -- this red-team round's naming scheme: test_freshEyes_<technique>
from __future__ import annotations

import json

import pytest

from mamori.errors import IdentityError
from mamori.identity import DevIssuer, JwksSource, VerifierConfig, verify_token

from .jwksserver import serve_jwks

DAY = 24 * 3600.0


@pytest.fixture
def leaked(tmp_path):
    return DevIssuer(tmp_path / "iss", issuer="https://idp", audience="app")


def test_freshEyes_jwks_stale_keys_a_withdrawn_key_expires_when_refreshes_keep_failing(
    leaked, tmp_path
):
    rotated = DevIssuer(tmp_path / "rotated", issuer="https://idp", audience="app")
    now = [1000.0]
    with serve_jwks(leaked.jwks_path.read_text()) as endpoint:
        jwks = JwksSource(url=endpoint.url, ttl_seconds=300, clock=lambda: now[0])
        config = VerifierConfig(issuer="https://idp", audience="app", jwks=jwks)
        assert verify_token(leaked.mint("alice"), config).subject == "alice"
        # The IdP withdraws the leaked key; the attacker makes the endpoint fail.
        endpoint.body = json.dumps(json.loads(rotated.jwks_path.read_text()))
        endpoint.status = 503
        now[0] += 2 * 3600
        # Within the staleness bound the previous keys still serve (availability)...
        assert verify_token(leaked.mint("mallory"), config).subject == "mallory"
        assert jwks.wait_idle()
        now[0] += DAY
        # ...past it, the withdrawn key no longer verifies anything.
        with pytest.raises(IdentityError, match="could not be refreshed"):
            verify_token(leaked.mint("mallory"), config)
        assert jwks.wait_idle()
        # Once the endpoint answers again the fresh keys verify and the leaked one is gone.
        endpoint.status = 200
        now[0] += 120
        with pytest.raises(IdentityError):
            verify_token(leaked.mint("mallory"), config)
        assert jwks.wait_idle()
        assert verify_token(rotated.mint("bob"), config).subject == "bob"
        with pytest.raises(IdentityError, match="key id"):
            verify_token(leaked.mint("mallory"), config)


def test_freshEyes_jwks_stale_keys_the_bound_cannot_be_shorter_than_the_ttl():
    with pytest.raises(IdentityError, match="at least the TTL"):
        JwksSource(url="https://idp/jwks", ttl_seconds=600, max_stale_seconds=60)
