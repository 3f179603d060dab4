"""The optional second revocation source: the issuer's OAuth Token Status List
(draft-ietf-oauth-status-list), served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mamori.errors import IdentityError
from mamori.genai import (
    EXPIRED_MESSAGE,
    ContextFactory,
    ConversationStore,
    Session,
    StatusListSource,
)
from mamori.genai.hospital import HOSPITAL_DOMAIN, build_hospital, synthetic_data
from mamori.identity import DevIssuer, JwksSource

from .conftest import DIM, bag_of_words


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class ListServer:
    """Serves status list tokens by path and counts the fetches."""

    def __init__(self) -> None:
        self.bodies: dict[str, str] = {}
        self.fetches = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = owner.bodies.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "application/statuslist+jwt")
                self.end_headers()
                self.wfile.write((body or "").encode())

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _list_token(issuer: DevIssuer, uri: str, statuses: dict[int, int], *, bits: int = 1) -> str:
    size = (max(statuses, default=0) + 1) * bits // 8 + 1
    data = bytearray(size)
    for idx, value in statuses.items():
        position = idx * bits
        data[position // 8] |= value << (position % 8)
    lst = base64.urlsafe_b64encode(zlib.compress(bytes(data))).rstrip(b"=").decode()
    return issuer.mint(
        uri,
        claims={"status_list": {"bits": bits, "lst": lst}, "ttl": 60},
        headers={"typ": "statuslist+jwt"},
    )


@pytest.fixture
def lists():
    server = ListServer()
    yield server
    server.close()


@pytest.fixture
def world(issuer, verifier, lists):
    clock = Clock()
    source = StatusListSource(
        issuer="https://idp.test",
        jwks=JwksSource(path=issuer.jwks_path),
        allowed_prefixes=(f"{lists.base}/lists/",),
        ttl_seconds=30,
        clock=clock,
    )
    state = ConversationStore.ephemeral(clock=clock, status_lists=source)
    hospital = build_hospital(bag_of_words, DIM, data=synthetic_data(), state=state)
    return hospital, ContextFactory(verifier, HOSPITAL_DOMAIN, state), clock


def _token(issuer, uri, idx):
    return issuer.mint(
        "dr-house",
        roles=["doctor"],
        tenant="st-mary",
        claims={"status": {"status_list": {"idx": idx, "uri": uri}}},
    )


def test_a_token_the_issuer_revokes_in_its_status_list_is_refused_after_the_cache_ttl(
    issuer, lists, world
):
    hospital, factory, clock = world
    uri = f"{lists.base}/lists/1"
    lists.bodies["/lists/1"] = _list_token(issuer, uri, {3: 0, 7: 1})
    session = Session(factory.from_token(_token(issuer, uri, 3)))
    assert hospital.gateway.call(session, "get_patient", {"patient_id": "p1"}).ok
    lists.bodies["/lists/1"] = _list_token(issuer, uri, {3: 1, 7: 1})  # the IdP revokes it
    assert hospital.gateway.call(session, "get_patient", {"patient_id": "p1"}).ok  # cached
    clock.now += 31
    result = hospital.gateway.call(session, "get_patient", {"patient_id": "p1"})
    assert result.error == EXPIRED_MESSAGE
    assert hospital.authorizer.audit.records()[-1].reason == "token status at the issuer is 0x01"
    assert lists.fetches == 2  # one fetch per ttl, not one per use


def test_a_suspended_token_cannot_start_a_session(issuer, lists, world):
    _hospital, factory, _clock = world
    uri = f"{lists.base}/lists/2"
    lists.bodies["/lists/2"] = _list_token(issuer, uri, {5: 2}, bits=2)  # 0x02 SUSPENDED
    with pytest.raises(IdentityError, match="0x02"):
        factory.from_token(_token(issuer, uri, 5))


@pytest.mark.parametrize(
    "case", ["outside the allowed prefix", "other signer", "other uri", "missing", "index"]
)
def test_a_status_list_that_cannot_be_trusted_refuses_the_token(
    issuer, lists, world, tmp_path, case
):
    _hospital, factory, _clock = world
    uri = f"{lists.base}/lists/3"
    signer = issuer
    if case == "other signer":
        signer = DevIssuer(tmp_path / "evil", issuer="https://idp.test", audience="mamori")
    body_uri = f"{lists.base}/lists/other" if case == "other uri" else uri
    if case != "missing":
        lists.bodies["/lists/3"] = _list_token(signer, body_uri, {0: 0})
    token_uri = "http://169.254.169.254/lists/3" if "prefix" in case else uri
    idx = 10_000 if case == "index" else 0
    with pytest.raises(IdentityError, match="status list unavailable"):
        factory.from_token(_token(issuer, token_uri, idx))


def test_a_malformed_status_claim_refuses_the_token(issuer, world):
    _hospital, factory, _clock = world
    token = issuer.mint(
        "dr-house", roles=["doctor"], tenant="st-mary", claims={"status": {"status_list": 3}}
    )
    with pytest.raises(IdentityError, match="status claim"):
        factory.from_token(token)
