from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mamori.config import Settings, load_settings
from mamori.identity import DevIssuer
from mamori.service import ScanMode, create_app
from mamori.service.runtime import dev_issuer

LOOPBACK = ("127.0.0.1", 50123)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return load_settings(data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture
def issuer(settings: Settings) -> DevIssuer:
    return dev_issuer(settings)


@pytest.fixture
def mint(issuer: DevIssuer, settings: Settings) -> Callable[..., str]:
    def _mint(subject: str, *roles: str, mfa: bool = True, **kwargs) -> str:
        methods = ["pwd", "mfa"] if mfa else ["pwd"]
        claims = {settings.mfa_claim: methods, **kwargs.pop("claims", {})}
        return issuer.mint(subject, roles=roles, claims=claims, **kwargs)

    return _mint


@pytest.fixture
def app(settings: Settings, issuer: DevIssuer) -> FastAPI:
    return create_app(settings, scan_mode=ScanMode.INLINE)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, client=LOOPBACK) as c:
        yield c


@pytest.fixture
def upload(client: TestClient, app: FastAPI, mint) -> Callable[..., str]:
    """Upload bytes as an importer, wait for the scan, return the digest."""

    def _upload(data: bytes, *, by: str = "ivan", name: str = "model.pkl") -> str:
        r = client.post(
            "/v1/artifacts",
            params={"name": name},
            content=data,
            headers=bearer(mint(by, "importer")),
        )
        assert r.status_code == 201, r.text
        app.state.scanner.join()
        return r.json()["sha256"]

    return _upload
