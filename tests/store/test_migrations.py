"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mamori.store import Store
from mamori.store.schema import metadata


def test_migrating_an_empty_database_yields_the_models_schema(database_url):
    store = Store(database_url)
    store.migrate()
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    store.dispose()
    assert differences == []


def test_migrating_twice_is_a_no_op(database_url):
    store = Store(database_url)
    store.migrate()
    store.migrate()
    store.ping()
    store.dispose()
