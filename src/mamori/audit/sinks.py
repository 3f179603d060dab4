"""Audit sinks: a JSON-lines file for library use, and an in-memory list for tests and demos."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from mamori.audit.chain import AuditRecord, canonical_json
from mamori.errors import StoreError

__all__ = ["JsonlSink", "MemorySink"]


class JsonlSink:
    """Append-only JSON-lines file; each line is one record's canonical JSON."""

    def __init__(self, path: Path) -> None:
        """Use ``path``, creating it (and its directory) if needed."""
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
        except OSError as exc:
            msg = f"cannot open audit log {path}"
            raise StoreError(msg) from exc

    def append(self, record: AuditRecord) -> None:
        """Write and fsync one line, so an allow is never returned before it is logged."""
        line = canonical_json(record) + "\n"
        with self._lock:
            try:
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(line)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as exc:
                msg = f"cannot append to audit log {self.path}"
                raise StoreError(msg) from exc

    def records(self) -> Sequence[AuditRecord]:
        """Read every record back."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            msg = f"cannot read audit log {self.path}"
            raise StoreError(msg) from exc
        try:
            return [AuditRecord.from_json(json.loads(line)) for line in lines if line]
        except json.JSONDecodeError as exc:
            msg = f"audit log {self.path} holds a malformed line"
            raise StoreError(msg) from exc


class MemorySink:
    """Keeps records in a list."""

    def __init__(self) -> None:
        """Start empty."""
        self._records: list[AuditRecord] = []

    def append(self, record: AuditRecord) -> None:
        """Store ``record``."""
        self._records.append(record)

    def records(self) -> Sequence[AuditRecord]:
        """Return a copy of the stored records."""
        return list(self._records)
