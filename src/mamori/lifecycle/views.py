"""Read models the lifecycle hands to the CLI and the API: frozen, detached from the session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from mamori.store.models import (
    ApprovalDecision,
    ApprovalRow,
    ArtifactRow,
    ArtifactState,
    BindingRow,
    ScanRow,
    ScanStatus,
)

__all__ = [
    "ApprovalView",
    "ArtifactView",
    "BindingView",
    "GateResult",
    "Page",
    "ScanView",
    "artifact_view",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ScanView:
    """One scan of an artifact."""

    id: int
    sha256: str
    ruleset_version: str
    scanner_version: str
    status: ScanStatus
    verdict: str | None
    max_severity: str | None
    duration_s: float | None
    progress: float
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: ScanRow, sha256: str) -> ScanView:
        """Copy a row into a view."""
        return cls(
            id=row.id,
            sha256=sha256,
            ruleset_version=row.ruleset_version,
            scanner_version=row.scanner_version,
            status=row.status,
            verdict=row.verdict,
            max_severity=row.max_severity,
            duration_s=row.duration_s,
            progress=row.progress,
            error=row.error,
            created_at=row.created_at,
            finished_at=row.finished_at,
        )


@dataclass(frozen=True, slots=True)
class BindingView:
    """A registry name bound to the artifact."""

    source: str
    name: str
    version: str
    alias: str | None
    member_path: str

    @classmethod
    def of(cls, row: BindingRow) -> BindingView:
        """Copy a row into a view."""
        return cls(row.source, row.name, row.version, row.alias, row.member_path)


@dataclass(frozen=True, slots=True)
class ArtifactView:
    """An artifact, its newest scan under the current ruleset and whether it is deployable."""

    sha256: str
    size: int
    format: str
    state: ArtifactState
    state_reason: str
    imported_by: str
    created_at: datetime
    updated_at: datetime
    deployable: bool
    latest_scan: ScanView | None
    bindings: tuple[BindingView, ...]


@dataclass(frozen=True, slots=True)
class ApprovalView:
    """One approval, rejection or override, and the scan it was decided on."""

    decision: ApprovalDecision
    actor: str
    reason: str
    policy_ids: tuple[str, ...]
    scan_id: int | None
    created_at: datetime

    @classmethod
    def of(cls, row: ApprovalRow) -> ApprovalView:
        """Copy a row into a view."""
        return cls(
            row.decision, row.actor, row.reason, tuple(row.policy_ids), row.scan_id, row.created_at
        )


@dataclass(frozen=True, slots=True)
class GateResult:
    """The gate's answer: allowed or not, and why, in one sentence."""

    allowed: bool
    reason: str
    state: ArtifactState | None = None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing."""

    items: tuple[T, ...]
    total: int
    limit: int
    offset: int


def artifact_view(row: ArtifactRow, latest: ScanRow | None, *, deployable: bool) -> ArtifactView:
    """Build the view of an artifact row."""
    return ArtifactView(
        sha256=row.sha256,
        size=row.size,
        format=row.format,
        state=row.state,
        state_reason=row.state_reason,
        imported_by=row.imported_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deployable=deployable,
        latest_scan=None if latest is None else ScanView.of(latest, row.sha256),
        bindings=tuple(BindingView.of(b) for b in row.bindings),
    )
