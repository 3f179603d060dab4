"""Shared fixtures: the store and queue URLs the integration tests run against.

By default everything is embedded (SQLite files under tmp_path, a SQLite-backed queue). When
CI exports ``MAMORI_TEST_POSTGRES_URL`` (an admin URL) and ``MAMORI_TEST_REDIS_URL``, the same
tests run against a fresh PostgreSQL database per test and a Redis database per xdist worker.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests also import MLflow directly, before any mamori module that would switch its usage
# reporting off; nothing in a test run may reach out, and MLflow's reporting thread edits
# os.environ while other threads read it.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


@contextlib.contextmanager
def _fresh_database(folder: Path) -> Iterator[str]:
    admin = os.environ.get("MAMORI_TEST_POSTGRES_URL")
    if not admin:
        yield f"sqlite:///{folder / 'mamori.db'}"
        return
    from sqlalchemy import create_engine, text

    name = f"mamori_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A store URL with nothing in it: SQLite by default, a new PostgreSQL database in CI."""
    with _fresh_database(tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def session_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same, shared by a whole session (for stacks of real servers started once)."""
    with _fresh_database(tmp_path_factory.mktemp("store")) as url:
        yield url


@pytest.fixture
def queue_url(worker_id: str) -> str | None:
    """A Redis URL with an empty database for this xdist worker, or None for SQLite."""
    base = os.environ.get("MAMORI_TEST_REDIS_URL")
    if not base:
        return None
    index = 1 + (int(worker_id[2:]) if worker_id.startswith("gw") else 0)
    url = f"{base.rstrip('/')}/{index}"
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url
