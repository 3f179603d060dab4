"""The hash-chained audit log shared by the GenAI gateway and the lifecycle service.

:class:`mamori.store.auditlog.SqlAuditLog` (in the store package, which it needs)
writes GenAI decisions into the lifecycle store's ``audit_log`` table, on the same chain.
"""

from __future__ import annotations

from mamori.audit.chain import (
    GENESIS_HASH,
    AuditChain,
    AuditLog,
    AuditRecord,
    AuditSink,
    canonical_json,
    record_hash,
    verify_chain,
)
from mamori.audit.sinks import JsonlSink, MemorySink

__all__ = [
    "GENESIS_HASH",
    "AuditChain",
    "AuditLog",
    "AuditRecord",
    "AuditSink",
    "JsonlSink",
    "MemorySink",
    "canonical_json",
    "record_hash",
    "verify_chain",
]
