"""Verify and export the store's audit chain (for ``mamori audit`` and operators).

:func:`mamori.audit.verify_chain` checks each record's link to its predecessor. The store also
keeps every record's own hash, so an edit to the *newest* record (which no later link covers)
is caught too, as long as the stored hash was not rewritten along with it. Anchoring the
newest hash outside the database (exporting it somewhere append-only) closes that gap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final

from sqlalchemy import select

from mamori.audit.chain import GENESIS_HASH, AuditRecord, record_hash
from mamori.errors import StoreError
from mamori.store.db import Store, audit_append, audit_records
from mamori.store.models import AuditRow

__all__ = ["SqlAuditLog", "iter_audit", "verify_store_chain"]

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


def verify_store_chain(store: Store) -> int:
    """Check every record's sequence number, link and stored hash; return how many.

    Raises:
        StoreError: naming the first record that is missing, out of order, or altered.
    """
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
        expected_prev = actual
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
