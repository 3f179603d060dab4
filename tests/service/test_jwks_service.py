"""Issue 14 item 2 against a real ``mamori serve`` and a real, slow JWKS endpoint.

Before the fix 100 unauthenticated requests with random kids made 100 JWKS fetches and, with
a slow endpoint, ten of them held a valid request up for 20.5 s.
"""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from tests.identity.jwksserver import serve_jwks

from mamori.identity import DevIssuer

from .realserver import mamori_serve

pytestmark = pytest.mark.slow

_SLOW = 2.0
_ISSUER = "https://idp.jwks.test"


@pytest.fixture
def stack(tmp_path):
    issuer = DevIssuer(tmp_path / "idp", issuer=_ISSUER, audience="mamori")
    with serve_jwks(issuer.jwks_path.read_text()) as endpoint:
        env = {
            "MAMORI_DEV_ISSUER": "false",
            "MAMORI_OIDC_ISSUER": _ISSUER,
            "MAMORI_JWKS_URL": endpoint.url,
            "MAMORI_JWKS_REFRESH_SECONDS": "60",
        }
        with mamori_serve(tmp_path / "data", env) as (url, _proc):
            yield url, issuer, endpoint


def test_random_kids_cost_one_fetch_and_never_hold_up_a_valid_request(stack):
    url, issuer, endpoint = stack
    valid = {"Authorization": f"Bearer {issuer.mint('alice', roles=['viewer'])}"}
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/v1/artifacts", headers=valid).status_code == 200  # first load
        endpoint.delay = _SLOW
        forged = [
            {"Authorization": f"Bearer {issuer.mint('m', headers={'kid': secrets.token_hex(8)})}"}
            for _ in range(100)
        ]

        def _forged(headers: dict[str, str]) -> int:
            return client.get("/v1/artifacts", headers=headers).status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = pool.map(_forged, forged)
            time.sleep(0.2)  # the refresh is now in flight, slowly
            started = time.perf_counter()
            assert client.get("/v1/artifacts", headers=valid).status_code == 200
            valid_latency = time.perf_counter() - started
            assert set(statuses) == {401}
        time.sleep(_SLOW + 0.5)  # let the one refresh finish
    assert endpoint.fetches <= 2
    assert valid_latency < _SLOW / 2
