"""The serving tests use the lifecycle's store-backed fixtures (a real SQLite store)."""

from tests.lifecycle.conftest import lifecycle, queued, store

__all__ = ["lifecycle", "queued", "store"]
