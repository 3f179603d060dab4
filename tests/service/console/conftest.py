from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

LOOPBACK = ("127.0.0.1", 50124)


@pytest.fixture
def browser(app: FastAPI) -> Iterator[TestClient]:
    """A cookie-keeping client over https (the session cookie is Secure)."""
    with TestClient(app, client=LOOPBACK, base_url="https://testserver") as c:
        yield c


@pytest.fixture
def browser_factory(app: FastAPI) -> Iterator[Callable[[], TestClient]]:
    """More browsers on the same app (a second user needs a cookie jar of its own)."""
    opened: list[TestClient] = []

    def _new() -> TestClient:
        c = TestClient(app, client=LOOPBACK, base_url="https://testserver")
        opened.append(c)
        return c

    yield _new
    for c in opened:
        c.close()
