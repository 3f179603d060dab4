"""GenAI decisions on the lifecycle store's hash chain (the ``audit_log`` table).

:class:`SqlAuditLog` is an :class:`~mamori.audit.AuditLog` for :class:`mamori.genai.Authorizer`.
Unlike :class:`~mamori.audit.AuditChain`, it keeps no chain state in memory: every record is
linked inside its own write transaction by :func:`mamori.store.db.audit_append`, to whatever
record is newest in the table at that moment. The lifecycle service and any number of gateway
processes can therefore append to one chain without forking it (PostgreSQL serialises appends
with an advisory lock, SQLite with ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mamori.store.db import audit_append, audit_records

if TYPE_CHECKING:
    from mamori.audit.chain import AuditRecord
    from mamori.store.db import Store

__all__ = ["SqlAuditLog"]


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
