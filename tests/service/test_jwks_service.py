"""Issue 14 item 2 against a real ``mamori serve`` and a real, slow JWKS endpoint.

Before the fix 100 unauthenticated requests with random kids made 100 JWKS fetches and, with
a slow endpoint, ten of them held a valid request up for 20.5 s.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from tests.identity.jwksserver import serve_jwks

from mamori.identity import DevIssuer

pytestmark = pytest.mark.slow

_MAMORI = [sys.executable, "-c", "from mamori.cli import main; main()"]
_SLOW = 2.0
_ISSUER = "https://idp.jwks.test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def stack(tmp_path):
    issuer = DevIssuer(tmp_path / "idp", issuer=_ISSUER, audience="mamori")
    with serve_jwks(issuer.jwks_path.read_text()) as endpoint:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORI_")} | {
            "MAMORI_DATA_DIR": str(tmp_path / "data"),
            "MAMORI_PORT": str(port),
            "MAMORI_DEV_ISSUER": "false",
            "MAMORI_OIDC_ISSUER": _ISSUER,
            "MAMORI_JWKS_URL": endpoint.url,
            "MAMORI_JWKS_REFRESH_SECONDS": "60",
        }
        log = (tmp_path / "server.log").open("wb")
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
                pytest.fail((tmp_path / "server.log").read_text())
            time.sleep(0.2)
        try:
            yield url, issuer, endpoint
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


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
