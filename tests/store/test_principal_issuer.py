"""Issue 14 item 1: the store keeps the importer's issuer and the audit log escapes its text."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

import mamori.store.db
from mamori.store import Store, audit_records
from mamori.store.db import audit_append


def _alembic(store: Store, target: str, *, down: bool = False) -> None:
    cfg = Config()
    cfg.set_main_option(
        "script_location", str(Path(mamori.store.db.__file__).parent / "migrations")
    )
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, target)


def test_migration_0004_backfills_the_importer_issuer_from_the_import_audit_record(
    database_url,
):
    store = Store(database_url)
    _alembic(store, "0003")
    now = datetime.now(UTC)
    with store.write() as session:
        audit_append(
            session,
            principal="https://idp|ivan",
            action="import",
            resource="a" * 64,
            decision="quarantined",
        )
        session.execute(
            text(
                "INSERT INTO artifacts (sha256, size, format, state, state_reason, imported_by,"
                " created_at, updated_at) VALUES (:sha, 1, 'unknown', 'QUARANTINED', '', :by,"
                " :now, :now)"
            ),
            [{"sha": "a" * 64, "by": "ivan", "now": now}, {"sha": "b" * 64, "by": "x", "now": now}],
        )
    store.migrate()
    with store.read() as session:
        rows = dict(session.execute(text("SELECT sha256, imported_by_issuer FROM artifacts")).all())
    store.dispose()
    # The second artifact has no import record: its issuer stays unknown ("").
    assert rows == {"a" * 64: "https://idp", "b" * 64: ""}


def test_migration_0004_downgrades_cleanly(database_url):
    store = Store(database_url)
    store.migrate()
    _alembic(store, "0003", down=True)
    _alembic(store, "head")
    store.ping()
    store.dispose()


def test_audit_records_store_invisible_and_control_characters_escaped(database_url):
    store = Store(database_url)
    store.migrate()
    with store.write() as session:
        audit_append(
            session,
            principal="https://idp|ivan\u200b",
            action="approve",
            resource="a" * 64,
            decision="safe -> approved",
            reason="ok\x1b[2K\u202e",
        )
    with store.read() as session:
        (record,) = audit_records(session)
    store.dispose()
    assert record.principal == "https://idp|ivan\\u200b"
    assert record.reason == "ok\\x1b[2K\\u202e"
