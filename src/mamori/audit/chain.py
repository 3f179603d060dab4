"""Hash-chained audit records, independent of where they are stored.

Each record carries ``prev_hash``: the sha256 of the previous record's canonical JSON (sorted
keys, no whitespace, UTF-8). Editing, dropping or reordering any record breaks every later
link, which :func:`verify_chain` reports. Sinks (a JSON-lines file here, SQL in the lifecycle
service) only store the records that :class:`AuditChain` produces.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mamori.errors import StoreError

__all__ = [
    "GENESIS_HASH",
    "AuditChain",
    "AuditLog",
    "AuditRecord",
    "AuditSink",
    "canonical_json",
    "record_hash",
    "verify_chain",
]

#: ``prev_hash`` of the first record in a chain.
GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One authorization decision or state change."""

    seq: int
    timestamp: float
    principal: str
    action: str
    resource: str
    decision: str
    policy_ids: tuple[str, ...]
    reason: str
    prev_hash: str

    def to_json(self) -> dict[str, Any]:
        """Return the record as plain JSON types."""
        # Spelled out rather than ``dataclasses.asdict``: this runs twice per decision and
        # asdict's deep copy was a third of the audit cost.
        return {
            "seq": self.seq,
            "timestamp": self.timestamp,
            "principal": self.principal,
            "action": self.action,
            "resource": self.resource,
            "decision": self.decision,
            "policy_ids": list(self.policy_ids),
            "reason": self.reason,
            "prev_hash": self.prev_hash,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditRecord:
        """Rebuild a record; unknown or missing keys raise :class:`StoreError`."""
        try:
            return cls(
                seq=int(data["seq"]),
                timestamp=float(data["timestamp"]),
                principal=str(data["principal"]),
                action=str(data["action"]),
                resource=str(data["resource"]),
                decision=str(data["decision"]),
                policy_ids=tuple(str(p) for p in data["policy_ids"]),
                reason=str(data["reason"]),
                prev_hash=str(data["prev_hash"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError("malformed audit record") from exc


# One encoder for every record: ``json.dumps`` with these options builds a new one per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(record: AuditRecord) -> str:
    """The exact text that is hashed: sorted keys, compact separators."""
    return _CANONICAL.encode(record.to_json())


def record_hash(record: AuditRecord) -> str:
    """sha256 hex digest of :func:`canonical_json`."""
    return hashlib.sha256(canonical_json(record).encode("utf-8")).hexdigest()


def verify_chain(records: Iterable[AuditRecord]) -> int:
    """Check every link and sequence number; return the number of records checked.

    Raises:
        StoreError: naming the first record whose link or sequence is broken.
    """
    expected_prev = GENESIS_HASH
    count = 0
    for count, record in enumerate(records, start=1):
        if record.seq != count:
            msg = f"audit record {count} has sequence number {record.seq}"
            raise StoreError(msg)
        if record.prev_hash != expected_prev:
            msg = f"audit chain broken at record {record.seq}"
            raise StoreError(msg)
        expected_prev = record_hash(record)
    return count


class AuditSink(Protocol):
    """Where records go. Implementations must raise :class:`StoreError` on failure."""

    def append(self, record: AuditRecord) -> None:
        """Durably store ``record``."""

    def records(self) -> Sequence[AuditRecord]:
        """Return every stored record in order."""


class AuditLog(Protocol):
    """Anything that links and stores a decision: :class:`AuditChain` or a SQL-backed log.

    Implementations raise :class:`StoreError` when the record cannot be stored; callers then
    deny, because an allow that is not on the record is not given.
    """

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
        """Append one decision and return the stored record."""

    def records(self) -> Sequence[AuditRecord]:
        """Every stored record in chain order."""


class AuditChain:
    """Builds records linked to the sink's last record and appends them."""

    def __init__(self, sink: AuditSink) -> None:
        """Resume the chain from whatever ``sink`` already holds."""
        self._sink = sink
        self._lock = threading.Lock()
        existing = sink.records()
        self._seq = len(existing)
        self._prev = record_hash(existing[-1]) if existing else GENESIS_HASH

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
        """Append one decision to the chain and return the stored record."""
        with self._lock:
            entry = AuditRecord(
                seq=self._seq + 1,
                timestamp=time.time(),
                principal=principal,
                action=action,
                resource=resource,
                decision=decision,
                policy_ids=tuple(policy_ids),
                reason=reason,
                prev_hash=self._prev,
            )
            self._sink.append(entry)
            self._seq = entry.seq
            self._prev = record_hash(entry)
            return entry

    def records(self) -> Sequence[AuditRecord]:
        """Every record the sink holds, in chain order."""
        return self._sink.records()
