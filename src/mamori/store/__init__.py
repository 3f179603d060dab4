"""The verdict store: artifacts by digest, scans, findings, bindings, approvals, audit."""

from __future__ import annotations

from mamori.store.db import Store, audit_append, audit_count, audit_records
from mamori.store.models import (
    ApprovalDecision,
    ArtifactState,
    ScanStatus,
)

__all__ = [
    "ApprovalDecision",
    "ArtifactState",
    "ScanStatus",
    "Store",
    "audit_append",
    "audit_count",
    "audit_records",
]
