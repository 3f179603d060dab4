"""The API's wire models: pydantic at the boundary only, built from the library's views."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mamori.identity.apitokens import ApiTokenInfo, Scope
from mamori.lifecycle import ArtifactView, GateResult, Page, ScanView
from mamori.scan.report.schema import FindingModel
from mamori.store.models import ArtifactState, ScanStatus

__all__ = [
    "ArtifactOut",
    "ArtifactPage",
    "BindingOut",
    "DecisionIn",
    "FindingsOut",
    "GateOut",
    "RegisterIn",
    "ScanOut",
    "TokenCreated",
    "TokenIn",
    "TokenOut",
]

_REASON_MAX = 4000


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ScanOut(_Out):
    """One scan of an artifact under one ruleset."""

    id: int
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
    def of(cls, view: ScanView) -> ScanOut:
        """Build from the library view."""
        return cls(
            id=view.id,
            ruleset_version=view.ruleset_version,
            scanner_version=view.scanner_version,
            status=view.status,
            verdict=view.verdict,
            max_severity=view.max_severity,
            duration_s=view.duration_s,
            progress=view.progress,
            error=view.error,
            created_at=view.created_at,
            finished_at=view.finished_at,
        )


class BindingOut(_Out):
    """A name the outside world uses for the artifact."""

    source: str
    name: str
    version: str
    alias: str | None
    member_path: str


class ArtifactOut(_Out):
    """An artifact, its current scan and whether it may be deployed."""

    sha256: str
    size: int
    format: str
    state: ArtifactState
    state_reason: str
    imported_by: str
    created_at: datetime
    updated_at: datetime
    deployable: bool
    latest_scan: ScanOut | None
    bindings: list[BindingOut]

    @classmethod
    def of(cls, view: ArtifactView) -> ArtifactOut:
        """Build from the library view."""
        return cls(
            sha256=view.sha256,
            size=view.size,
            format=view.format,
            state=view.state,
            state_reason=view.state_reason,
            imported_by=view.imported_by,
            created_at=view.created_at,
            updated_at=view.updated_at,
            deployable=view.deployable,
            latest_scan=None if view.latest_scan is None else ScanOut.of(view.latest_scan),
            bindings=[
                BindingOut(
                    source=b.source,
                    name=b.name,
                    version=b.version,
                    alias=b.alias,
                    member_path=b.member_path,
                )
                for b in view.bindings
            ],
        )


class ArtifactPage(_Out):
    """One page of artifacts, newest first."""

    items: list[ArtifactOut]
    total: int
    limit: int
    offset: int

    @classmethod
    def of(cls, page: Page[ArtifactView]) -> ArtifactPage:
        """Build from the library page."""
        return cls(
            items=[ArtifactOut.of(v) for v in page.items],
            total=page.total,
            limit=page.limit,
            offset=page.offset,
        )


class FindingsOut(_Out):
    """The findings of an artifact's current scan, filtered."""

    sha256: str
    verdict: str | None
    total: int
    findings: list[FindingModel]


class GateOut(_Out):
    """The gate's answer for one digest."""

    digest: str
    action: Literal["deploy", "invoke"]
    allowed: bool
    reason: str
    state: ArtifactState | None

    @classmethod
    def of(cls, digest: str, action: Literal["deploy", "invoke"], result: GateResult) -> GateOut:
        """Build from the library result."""
        return cls(
            digest=digest,
            action=action,
            allowed=result.allowed,
            reason=result.reason,
            state=result.state,
        )


class DecisionIn(_In):
    """An approval, rejection or override; overrides must give a reason."""

    reason: str = Field(default="", max_length=_REASON_MAX)


class RegisterIn(_In):
    """Register a file that already sits on the server (admin only)."""

    path: str = Field(min_length=1, max_length=4096)
    name: str | None = Field(default=None, min_length=1, max_length=512)
    source: str = Field(default="path", min_length=1, max_length=32)


class TokenIn(_In):
    """A new API token."""

    name: str = Field(min_length=1, max_length=255)
    subject: str | None = Field(
        default=None, min_length=1, max_length=255, description="Default: ci:<name>."
    )
    roles: list[str] = Field(default_factory=list, max_length=16)
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))
    ttl_seconds: int | None = Field(default=None, gt=0, le=10 * 365 * 24 * 3600)


class TokenOut(_Out):
    """A stored API token's metadata (never its secret)."""

    id: int
    name: str
    subject: str
    roles: list[str]
    scopes: list[Scope]
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, info: ApiTokenInfo) -> TokenOut:
        """Build from the library view."""
        return cls(
            id=info.id,
            name=info.name,
            subject=info.subject,
            roles=list(info.roles),
            scopes=list(info.scopes),
            created_by=info.created_by,
            created_at=info.created_at,
            expires_at=info.expires_at,
            revoked_at=info.revoked_at,
        )


class TokenCreated(TokenOut):
    """A new token, with the secret shown this once."""

    token: str
