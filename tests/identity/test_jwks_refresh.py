"""Issue 14 item 2: unknown ``kid`` values cannot make mamori fetch the JWKS per request.

Before the fix, 100 tokens with random kids made 100 JWKS fetches, and with a slow JWKS
endpoint ten of them held a valid request up for 20 s (every lookup took one lock around the
fetch). These tests use a real, deliberately slow JWKS endpoint on 127.0.0.1.
"""

from __future__ import annotations

import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mamori.errors import IdentityError
from mamori.identity import DevIssuer, JwksSource, VerifierConfig, verify_token

from .jwksserver import serve_jwks

SLOW = 1.5


@pytest.fixture
def issuer(tmp_path):
    return DevIssuer(tmp_path / "iss", issuer="https://idp", audience="app")


def _config(jwks: JwksSource) -> VerifierConfig:
    return VerifierConfig(issuer="https://idp", audience="app", jwks=jwks)


def _random_kid(issuer: DevIssuer) -> str:
    return issuer.mint("mallory", headers={"kid": secrets.token_hex(8)})


def test_a_hundred_random_kids_cause_at_most_one_fetch_and_never_wait_for_it(issuer):
    with serve_jwks(issuer.jwks_path.read_text(), delay=SLOW) as endpoint:
        jwks = JwksSource(url=endpoint.url, refresh_interval_seconds=60)
        config = _config(jwks)
        assert verify_token(issuer.mint("alice"), config).subject == "alice"  # first load
        tokens = [_random_kid(issuer) for _ in range(100)]

        def _attempt(token: str) -> float:
            started = time.perf_counter()
            with pytest.raises(IdentityError, match="key id"):
                verify_token(token, config)
            return time.perf_counter() - started

        with ThreadPoolExecutor(16) as pool:
            waits = list(pool.map(_attempt, tokens))
        assert jwks.wait_idle()
        assert endpoint.fetches <= 2  # the first load and at most one refresh
        assert max(waits) < SLOW / 2  # nobody waited for the slow fetch


def test_a_valid_request_is_not_delayed_by_a_refresh_in_flight(issuer):
    with serve_jwks(issuer.jwks_path.read_text()) as endpoint:
        jwks = JwksSource(url=endpoint.url, refresh_interval_seconds=1)
        config = _config(jwks)
        verify_token(issuer.mint("alice"), config)
        endpoint.delay = 3.0
        with pytest.raises(IdentityError):
            verify_token(_random_kid(issuer), config)  # starts the slow refresh
        started = time.perf_counter()
        assert verify_token(issuer.mint("alice"), config).subject == "alice"
        elapsed = time.perf_counter() - started
        assert elapsed < 0.5
        assert jwks.wait_idle()


def test_a_repeated_unknown_kid_is_answered_from_the_negative_cache(issuer):
    clock = [1000.0]
    with serve_jwks(issuer.jwks_path.read_text()) as endpoint:
        jwks = JwksSource(url=endpoint.url, refresh_interval_seconds=30, clock=lambda: clock[0])
        config = _config(jwks)
        verify_token(issuer.mint("alice"), config)
        token = _random_kid(issuer)
        clock[0] += 31
        for _ in range(4):
            with pytest.raises(IdentityError):
                verify_token(token, config)
            jwks.wait_idle()
            clock[0] += 9
        # One refresh for the new kid; the repeats inside the interval asked for none.
        assert endpoint.fetches == 2
        clock[0] += 10  # the negative entry expires with the interval
        with pytest.raises(IdentityError):
            verify_token(token, config)
        jwks.wait_idle()
        assert endpoint.fetches == 3


def test_a_rotated_in_key_verifies_once_the_refresh_has_run(issuer, tmp_path):
    newer = DevIssuer(tmp_path / "newer", issuer="https://idp", audience="app")
    both = {"keys": [*json.loads(issuer.jwks_path.read_text())["keys"]]}
    with serve_jwks(json.dumps(both)) as endpoint:
        jwks = JwksSource(url=endpoint.url, refresh_interval_seconds=1)
        config = _config(jwks)
        verify_token(issuer.mint("alice"), config)
        both["keys"] += json.loads(newer.jwks_path.read_text())["keys"]
        endpoint.body = json.dumps(both)
        time.sleep(1.1)
        with pytest.raises(IdentityError):
            verify_token(newer.mint("bob"), config)  # refused now, refreshed in the background
        assert jwks.wait_idle()
        assert verify_token(newer.mint("bob"), config).subject == "bob"


def test_a_failed_refresh_keeps_the_previous_keys(issuer):
    with serve_jwks(issuer.jwks_path.read_text()) as endpoint:
        jwks = JwksSource(url=endpoint.url, ttl_seconds=1, refresh_interval_seconds=1)
        config = _config(jwks)
        verify_token(issuer.mint("alice"), config)
        endpoint.status = 500
        time.sleep(1.1)
        assert verify_token(issuer.mint("alice"), config).subject == "alice"  # stale, refreshing
        assert jwks.wait_idle()
        assert endpoint.fetches == 2
        assert verify_token(issuer.mint("alice"), config).subject == "alice"


def test_an_oversized_jwks_is_refused(issuer):
    with (
        serve_jwks(" " * (2 << 20)) as endpoint,
        pytest.raises(IdentityError, match="larger than"),
    ):
        verify_token(issuer.mint("a"), _config(JwksSource(url=endpoint.url)))


def test_a_failing_first_load_is_not_retried_on_every_request(issuer):
    with serve_jwks("{}") as endpoint:
        config = _config(JwksSource(url=endpoint.url))
        for _ in range(20):
            with pytest.raises(IdentityError):
                verify_token(issuer.mint("a"), config)
        assert endpoint.fetches == 1
