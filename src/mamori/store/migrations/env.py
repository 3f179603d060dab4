"""Alembic environment: always driven programmatically by :meth:`mamori.store.Store.migrate`."""

from __future__ import annotations

from alembic import context

from mamori.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    msg = "run migrations through mamori.store.Store.migrate(), which passes a connection"
    raise RuntimeError(msg)

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
