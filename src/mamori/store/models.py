"""The verdict store's tables, as SQLAlchemy 2 typed ORM models.

Artifacts are keyed by SHA-256: a changed byte is a new artifact with its own scans. Registry
names, versions and aliases only *point at* digests (bindings); no decision reads a registry
tag. Every state change is written together with its audit record in one transaction.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from mamori.audit.chain import AuditRecord

__all__ = [
    "ApiTokenRow",
    "ApprovalDecision",
    "ApprovalRow",
    "ArtifactRow",
    "ArtifactState",
    "AuditRow",
    "Base",
    "BindingRow",
    "FindingRow",
    "ScanRow",
    "ScanStatus",
]


class ArtifactState(enum.StrEnum):
    """Where an artifact is in its lifecycle."""

    QUARANTINED = "quarantined"
    """Registered, not yet scanned under the current ruleset."""
    SAFE = "safe"
    """Scanned SAFE; waiting for an approval decision."""
    UNSAFE = "unsafe"
    """Scanned UNSAFE (or an approved artifact that a newer ruleset flagged)."""
    APPROVED = "approved"
    """Approved for deployment; deployable while its latest scan stays SAFE or overridden."""
    REJECTED = "rejected"
    """Rejected by an approver; never deployable."""


class ScanStatus(enum.StrEnum):
    """A scan job's progress."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ApprovalDecision(enum.StrEnum):
    """What an approver decided."""

    APPROVED = "approved"
    REJECTED = "rejected"
    OVERRIDE = "override"
    """An admin approved an UNSAFE verdict, with a written reason."""


def _enum(cls: type[enum.StrEnum]) -> Enum:
    # Stored as the string value, not a native DB enum, so migrations stay simple on both
    # SQLite and PostgreSQL; the column is still validated on the way in and out.
    return Enum(
        cls,
        native_enum=False,
        values_callable=lambda e: [m.value for m in e],
        length=32,
        validate_strings=True,
    )


class Base(DeclarativeBase):
    """Declarative base of every mamori table."""

    type_annotation_map = {dict[str, Any]: JSON}  # noqa: RUF012 - SQLAlchemy's documented form


class ArtifactRow(Base):
    """One exact byte sequence, identified by its SHA-256."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)  # models exceed 2 GiB
    format: Mapped[str] = mapped_column(String(32))
    state: Mapped[ArtifactState] = mapped_column(_enum(ArtifactState))
    state_reason: Mapped[str] = mapped_column(Text, default="")
    imported_by: Mapped[str] = mapped_column(String(255))
    """The importer's subject; with :attr:`imported_by_issuer`, the importing principal."""
    imported_by_issuer: Mapped[str] = mapped_column(String(255), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    stored_path: Mapped[str | None] = mapped_column(Text, default=None)

    scans: Mapped[list[ScanRow]] = relationship(back_populates="artifact", order_by="ScanRow.id")
    bindings: Mapped[list[BindingRow]] = relationship(back_populates="artifact")


class ScanRow(Base):
    """One scan of one artifact under one ruleset. At most one finished scan per pair."""

    __tablename__ = "scans"
    __table_args__ = (
        UniqueConstraint("artifact_id", "ruleset_version", name="uq_scan_artifact_ruleset"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"))
    ruleset_version: Mapped[str] = mapped_column(String(32))
    scanner_version: Mapped[str] = mapped_column(String(32))
    status: Mapped[ScanStatus] = mapped_column(_enum(ScanStatus))
    verdict: Mapped[str | None] = mapped_column(String(16), default=None)
    max_severity: Mapped[str | None] = mapped_column(String(16), default=None)
    duration_s: Mapped[float | None] = mapped_column(default=None)
    progress: Mapped[float] = mapped_column(default=0.0)
    claim: Mapped[str] = mapped_column(String(64), default="")
    """Random token of the worker that owns a RUNNING scan; a stale claim may be taken over."""
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    artifact: Mapped[ArtifactRow] = relationship(back_populates="scans")
    findings: Mapped[list[FindingRow]] = relationship(
        back_populates="scan", cascade="all, delete-orphan", order_by="FindingRow.id"
    )


class FindingRow(Base):
    """A finding of a finished scan, flattened for filtering."""

    __tablename__ = "findings"
    __table_args__ = (Index("ix_findings_rule", "rule_id"), Index("ix_findings_sev", "severity"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scan_id: Mapped[int] = mapped_column(ForeignKey("scans.id", ondelete="CASCADE"))
    rule_id: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))
    severity_rank: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
    member: Mapped[str] = mapped_column(Text, default="")
    offset: Mapped[int | None] = mapped_column(BigInteger, default=None)
    evidence: Mapped[str | None] = mapped_column(Text, default=None)

    scan: Mapped[ScanRow] = relationship(back_populates="findings")


class BindingRow(Base):
    """A name the outside world uses (upload, hf repo@sha, mlflow model/version) → a digest."""

    __tablename__ = "bindings"
    __table_args__ = (
        UniqueConstraint("source", "name", "version", "artifact_id", name="uq_binding"),
        Index("ix_bindings_name", "source", "name", "version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(512))
    version: Mapped[str] = mapped_column(String(255), default="")
    alias: Mapped[str | None] = mapped_column(String(255), default=None)
    member_path: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    artifact: Mapped[ArtifactRow] = relationship(back_populates="bindings")


class ApprovalRow(Base):
    """An approval, rejection or override, tied to the scan it was decided on."""

    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_artifact", "artifact_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"))
    scan_id: Mapped[int | None] = mapped_column(ForeignKey("scans.id"), default=None)
    decision: Mapped[ApprovalDecision] = mapped_column(_enum(ApprovalDecision))
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text, default="")
    policy_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditRow(Base):
    """One link of the hash-chained audit log (see :mod:`mamori.audit.chain`)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    timestamp: Mapped[float]
    principal: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(Text)
    decision: Mapped[str] = mapped_column(String(32))
    policy_ids: Mapped[list[str]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    def to_record(self) -> AuditRecord:
        """The chain record this row stores (``hash`` is kept apart, to check it)."""
        return AuditRecord(
            seq=self.seq,
            timestamp=self.timestamp,
            principal=self.principal,
            action=self.action,
            resource=self.resource,
            decision=self.decision,
            policy_ids=tuple(self.policy_ids),
            reason=self.reason,
            prev_hash=self.prev_hash,
        )


class ApiTokenRow(Base):
    """A CI token: only its SHA-256 is stored; scoped and revocable."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(String(255))
    roles: Mapped[list[str]] = mapped_column(JSON)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


# The MLflow integration's tables (revision 0002) live in their own module on this Base;
# importing it here keeps Base.metadata complete for Alembic and the schema test.
# So do GenAI's revocations and conversation state (revision 0004).
from mamori.store import models_genai as _models_genai  # noqa: E402, F401
from mamori.store import models_mlflow as _models_mlflow  # noqa: E402, F401
