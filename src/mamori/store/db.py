"""Connections, transactions, migrations and the SQL audit chain.

SQLite (the embedded default) runs in WAL mode so readers never wait for the writer, and every
write transaction starts with ``BEGIN IMMEDIATE`` so that two processes (the API and a worker)
cannot both read, then both try to upgrade to a write lock and deadlock. PostgreSQL is used
through the same code; audit appends take a transaction-scoped advisory lock there.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mamori.audit.chain import GENESIS_HASH, AuditRecord, record_hash
from mamori.errors import StoreError
from mamori.store.models import AuditRow
from mamori.text import printable

__all__ = ["Store", "audit_append", "audit_count", "audit_records"]

_WRITE: Final = "mamori_write"
# An arbitrary constant key for pg_advisory_xact_lock: serialises audit appends cluster-wide.
_AUDIT_LOCK_KEY: Final = 0x6D616D6F


class Store:
    """The verdict store: an engine plus read and write session factories."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        """Connect to ``url`` (``sqlite:///path`` or ``postgresql+psycopg://…``)."""
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        connect_args: dict[str, Any] = {}
        if self.is_sqlite:
            connect_args = {"timeout": 30, "check_same_thread": False}
            _ensure_parent(url)
        try:
            self.engine: Engine = create_engine(
                url, echo=echo, connect_args=connect_args, pool_pre_ping=not self.is_sqlite
            )
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            msg = f"cannot open the store at {_redact(url)}"
            raise StoreError(msg) from exc
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        # A store dropped without dispose() still closes its pooled connections (psycopg
        # warns about connections collected while open).
        self._finalizer = weakref.finalize(self, self.engine.dispose)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(
            self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False
        )

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        from alembic import command  # noqa: PLC0415 - only needed at start-up
        from alembic.config import Config  # noqa: PLC0415

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except SQLAlchemyError as exc:
            msg = f"migrating the store at {_redact(self.url)} failed"
            raise StoreError(msg) from exc

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session; errors become :class:`StoreError`."""
        try:
            with self._read() as session:
                yield session
        except SQLAlchemyError as exc:
            msg = "reading the store failed"
            raise StoreError(msg) from exc

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: everything in it commits together or not at all."""
        try:
            with self._write() as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            msg = "writing the store failed; nothing was changed"
            raise StoreError(msg) from exc

    def ping(self) -> None:
        """Raise :class:`StoreError` unless the database answers."""
        with self.read() as session:
            session.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close pooled connections."""
        self._finalizer()


def audit_append(
    session: Session,
    *,
    principal: str,
    action: str,
    resource: str,
    decision: str,
    policy_ids: tuple[str, ...] = (),
    reason: str = "",
) -> AuditRecord:
    """Append one audit record inside the caller's write transaction.

    The record is linked to the newest stored one, so it commits (or rolls back) together
    with the state change it describes. Its text fields are stored escaped
    (:func:`mamori.text.printable`): a zero-width, bidi or control character in a subject, a
    name or a reason reads as its escape in every viewer, never as nothing.
    """
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK_KEY})
    last = session.execute(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).scalar()
    prev = last.hash if last is not None else GENESIS_HASH
    seq = (last.seq + 1) if last is not None else 1
    record = AuditRecord(
        seq=seq,
        timestamp=time.time(),
        principal=printable(principal),
        action=printable(action),
        resource=printable(resource),
        decision=printable(decision),
        policy_ids=tuple(printable(p) for p in policy_ids),
        reason=printable(reason),
        prev_hash=prev,
    )
    session.add(
        AuditRow(
            seq=record.seq,
            timestamp=record.timestamp,
            principal=record.principal,
            action=record.action,
            resource=record.resource,
            decision=record.decision,
            policy_ids=list(record.policy_ids),
            reason=record.reason,
            prev_hash=record.prev_hash,
            hash=record_hash(record),
        )
    )
    session.flush()
    return record


def audit_records(
    session: Session, *, after: int = 0, limit: int | None = None
) -> list[AuditRecord]:
    """Stored audit records in chain order, from ``after + 1``."""
    query = select(AuditRow).where(AuditRow.seq > after).order_by(AuditRow.seq)
    if limit is not None:
        query = query.limit(limit)
    return [row.to_record() for row in session.execute(query).scalars()]


def audit_count(session: Session) -> int:
    """How many audit records are stored."""
    return int(session.execute(select(func.count()).select_from(AuditRow)).scalar_one())


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own is DEFERRED).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _ensure_parent(url: str) -> None:
    path = url.split("///", 1)[1] if "///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _redact(url: str) -> str:
    """The URL without its password, for error messages (secrets never in logs)."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
