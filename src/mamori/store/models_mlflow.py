"""Tables of the MLflow integration: webhook deliveries, known registry versions, break-glass.

Kept apart from :mod:`mamori.store.models` (same declarative ``Base``) so the integration's
schema reads as one unit; revision ``0002`` creates them, ``0004`` adds what a version is
bound to (its registry identity and the manifest of its files), ``0007`` what a break-glass
grant was made for.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Enum, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mamori.store.base import Base

__all__ = [
    "BreakGlassRow",
    "DeliveryRow",
    "DeliveryStatus",
    "MlflowVersionRow",
    "VersionStatus",
]


class DeliveryStatus(enum.StrEnum):
    """Where a verified webhook delivery is in its processing."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class VersionStatus(enum.StrEnum):
    """Whether mamori has bound a registry version's bytes."""

    RESOLVED = "resolved"
    """Every artifact file was quarantined and bound; scans were queued."""
    FAILED = "failed"
    """Resolution failed (registry or download error, limit); retried by the sweep."""
    GONE = "gone"
    """The registry no longer has this version."""


def _enum(cls: type[enum.StrEnum]) -> Enum:
    # Stored as strings (not native enums) like the core tables: simple on SQLite and PG.
    return Enum(
        cls,
        native_enum=False,
        values_callable=lambda e: [m.value for m in e],
        length=16,
        validate_strings=True,
    )


class DeliveryRow(Base):
    """A verified MLflow webhook delivery: the replay guard and the outbox of its work.

    The primary key is MLflow's ``X-MLflow-Delivery-Id``, so a replay (even after a restart)
    cannot be inserted twice; ``status`` lets a restarted process finish accepted work, and
    ``claimed_until`` (a lease) lets only one worker at a time work it.
    """

    __tablename__ = "mlflow_deliveries"
    __table_args__ = (Index("ix_mlflow_deliveries_status", "status"),)

    delivery_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    event: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column()
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class MlflowVersionRow(Base):
    """A registry version mamori has resolved (or tried to): what the sweep compares against."""

    __tablename__ = "mlflow_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_mlflow_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(512))
    version: Mapped[str] = mapped_column(String(255))
    status: Mapped[VersionStatus] = mapped_column(_enum(VersionStatus))
    files: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    mirrored: Mapped[str] = mapped_column(String(32), default="")
    """The ``mamori.verdict`` tag value last written to MLflow (a mirror; never read back)."""
    last_alert: Mapped[str] = mapped_column(Text, default="")
    """The last alert raised for this version, so a sweep does not repeat it every run."""
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    identity: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """The registry object the bytes were read from (``VersionIdentity.to_json``)."""
    manifest: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    """``[path, size, sha256]`` of every bound file (``ManifestEntry.to_json``)."""
    drift: Mapped[str] = mapped_column(Text, default="")
    """Why the registry no longer matches the binding; non-empty means undeployable until the
    version is resolved again (a rescan)."""
    verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    """When the bytes were last hashed and compared with the manifest."""


class BreakGlassRow(Base):
    """An audited, time-limited exception letting one version take one protected alias."""

    __tablename__ = "mlflow_break_glass"
    __table_args__ = (Index("ix_mlflow_break_glass_key", "name", "version", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(512))
    version: Mapped[str] = mapped_column(String(255))
    alias: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    granted_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    binding: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    """The version's bound identity and manifest when the grant was made (``None`` if it was
    not bound): the grant vouches for that object and those bytes, never for whatever the
    registry later holds under the same name and number."""
