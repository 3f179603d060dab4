from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest

from mamori.genai import ContextFactory, Session
from mamori.genai.hospital import HOSPITAL_CLAIMS, HOSPITAL_DOMAIN, build_hospital, synthetic_data
from mamori.identity import DevIssuer, JwksSource, VerifierConfig

DIM = 64


def bag_of_words(texts):
    """Deterministic stand-in embedding for fast tests (the demo uses the real model)."""
    out = []
    for text in texts:
        vec = [0.0] * DIM
        for word in text.lower().split():
            vec[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIM] += 1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        out.append([v / norm for v in vec])
    return out


@pytest.fixture(scope="session")
def issuer(tmp_path_factory) -> DevIssuer:
    return DevIssuer(
        tmp_path_factory.mktemp("issuer"), issuer="https://idp.test", audience="mamori"
    )


@pytest.fixture(scope="session")
def verifier(issuer) -> VerifierConfig:
    return VerifierConfig(
        issuer="https://idp.test",
        audience="mamori",
        jwks=JwksSource(path=issuer.jwks_path),
        claims=HOSPITAL_CLAIMS,
    )


@pytest.fixture
def hospital():
    return build_hospital(bag_of_words, DIM, data=synthetic_data())


@pytest.fixture
def factory(verifier, hospital) -> ContextFactory:
    return ContextFactory(verifier, HOSPITAL_DOMAIN, hospital.state)


@pytest.fixture
def login(issuer, factory):
    def make(subject: str, role: str, *, tenant: str = "st-mary", **claims) -> Session:
        token = issuer.mint(subject, roles=[role], tenant=tenant, claims=claims)
        return Session(factory.from_token(token))

    return make


@pytest.fixture
def doctor(login):
    return login("dr-house", "doctor")


@pytest.fixture
def receptionist(login):
    return login("rita", "receptionist")


@pytest.fixture
def patient(login):
    return login("pat-1", "patient", patient_id="p1")


@pytest.fixture
def tmp_audit(tmp_path) -> Path:
    return tmp_path / "audit.jsonl"
