"""Verify and export the store's audit chain (for ``mamori audit`` and operators).

:func:`mamori.audit.verify_chain` checks each record's link to its predecessor. The store also
keeps every record's own hash, so an edit to the *newest* record (which no later link covers)
is caught too, as long as the stored hash was not rewritten along with it. Someone who can
write the database can still rewrite the whole chain consistently; :func:`audit_head` gives
the newest (seq, hash) to keep somewhere append-only outside it, and
:func:`verify_store_chain` checks the chain still passes through every such anchor.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Final

from sqlalchemy import select

from mamori.audit.chain import GENESIS_HASH, AuditRecord, record_hash
from mamori.errors import StoreError
from mamori.store.db import Store, audit_append, audit_records
from mamori.store.models import AuditRow

__all__ = ["SqlAuditLog", "audit_head", "iter_audit", "verify_store_chain"]

_BATCH: Final = 1000


def _rows(store: Store, after: int) -> Iterator[tuple[AuditRecord, str]]:
    while True:
        with store.read() as session:
            batch = [
                (row.to_record(), row.hash)
                for row in session.execute(
                    select(AuditRow)
                    .where(AuditRow.seq > after)
                    .order_by(AuditRow.seq)
                    .limit(_BATCH)
                ).scalars()
            ]
        if not batch:
            return
        yield from batch
        after = batch[-1][0].seq


def iter_audit(store: Store, *, after: int = 0) -> Iterator[AuditRecord]:
    """Stored records after ``after``, in chain order, read in batches."""
    for record, _stored in _rows(store, after):
        yield record


def audit_head(store: Store) -> tuple[int, str]:
    """The newest record's ``(seq, hash)``; ``(0, GENESIS_HASH)`` for an empty chain."""
    with store.read() as session:
        row = session.execute(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1)).scalar()
        return (0, GENESIS_HASH) if row is None else (row.seq, row.hash)


def verify_store_chain(store: Store, anchors: Mapping[int, str] | None = None) -> int:
    """Check every record's sequence number, link and stored hash; return how many.

    ``anchors`` maps sequence numbers to hashes recorded earlier outside the database (see
    :func:`audit_head`): the chain must still reach each one with exactly that hash.

    Raises:
        StoreError: naming the first record that is missing, out of order, or altered, or
            the first anchor the chain no longer passes through.
    """
    anchors = anchors or {}
    expected_prev = GENESIS_HASH
    count = 0
    for count, (record, stored) in enumerate(_rows(store, 0), start=1):
        if record.seq != count:
            msg = f"audit record {count} is missing (found sequence number {record.seq})"
            raise StoreError(msg)
        if record.prev_hash != expected_prev:
            msg = (
                f"audit chain broken at record {record.seq}: it does not link to record "
                f"{record.seq - 1} as stored (record {record.seq - 1} or this link was altered)"
            )
            raise StoreError(msg)
        actual = record_hash(record)
        if actual != stored:
            msg = f"audit record {record.seq} was altered: its content no longer matches its hash"
            raise StoreError(msg)
        anchored = anchors.get(record.seq)
        if anchored is not None and anchored != actual:
            msg = (
                f"audit chain rewritten: record {record.seq} no longer has the hash anchored "
                "outside the database"
            )
            raise StoreError(msg)
        expected_prev = actual
    beyond = [seq for seq in anchors if seq > count]
    if beyond:
        msg = f"audit chain truncated: anchored record {min(beyond)} is gone ({count} remain)"
        raise StoreError(msg)
    return count


class SqlAuditLog:
    """Append each decision to the store's audit chain in its own committed transaction."""

    def __init__(self, store: Store) -> None:
        """Use ``store`` (already migrated); nothing is read or cached here."""
        self._store = store

    def record(
        self,
        *,
        principal: str,
        action: str,
        resource: str,
        decision: str,
        policy_ids: Sequence[str],
        reason: str,
    ) -> AuditRecord:
        """Commit one record before returning it.

        Raises:
            StoreError: the record was not stored (the authorizer then denies).
        """
        with self._store.write() as session:
            return audit_append(
                session,
                principal=principal,
                action=action,
                resource=resource,
                decision=decision,
                policy_ids=tuple(policy_ids),
                reason=reason,
            )

    def records(self) -> Sequence[AuditRecord]:
        """Every stored record, GenAI and lifecycle alike, in chain order."""
        with self._store.read() as session:
            return audit_records(session)
