"""The MLflow integration object: accepted deliveries (outbox), their processing, the sweep.

A verified delivery is written to ``mlflow_deliveries`` in one transaction keyed by its
delivery id, which is both the replay guard (a second insert of the same id is refused, also
after a restart) and the outbox: the HTTP handler answers 202 at once, and
:meth:`MlflowIntegration.process_pending` does the slow work (registry lookup, download,
scan) later, in whichever process runs it. A worker claims a delivery before working it (a
lease in the row, taken by one conditional UPDATE), so two workers never work the same one; a
crash leaves a PENDING row whose lease runs out and the next run finishes it. A lost delivery
is found by the sweep.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Final

import structlog
from mlflow.tracking import MlflowClient
from sqlalchemy import delete, or_, select, update

from mamori.config import Settings
from mamori.errors import ConfigError, MamoriError
from mamori.lifecycle.mlflow.gate import is_protected
from mamori.lifecycle.mlflow.resolve import Resolution, Resolver
from mamori.lifecycle.mlflow.sweep import (
    AliasGuard,
    SweepPlan,
    Target,
    mirror_verdicts,
    plan_sweep,
)
from mamori.lifecycle.mlflow.webhook import (
    AliasData,
    Delivery,
    EventData,
    EventKind,
    ModelVersionData,
    PromptVersionData,
    TagData,
)
from mamori.lifecycle.service import Lifecycle
from mamori.store.db import Store
from mamori.store.models_mlflow import (
    DeliveryRow,
    DeliveryStatus,
    MlflowVersionRow,
    VersionStatus,
)

__all__ = ["MlflowIntegration", "SweepReport", "build_integration", "record_delivery"]

_log = structlog.get_logger("mamori.mlflow")
_MAX_ATTEMPTS: Final = 5
_KEEP_DELIVERIES: Final = timedelta(days=7)
# Longer than any resolution (download and scan of the largest version) takes; after it, a
# claim whose worker died is taken over.
_LEASE: Final = timedelta(minutes=30)


def record_delivery(
    store: Store, delivery: Delivery, kind: EventKind | None, data: EventData | None
) -> bool:
    """Store an authenticated delivery once; False when its id was seen before (a replay)."""
    now = datetime.now(UTC)
    with store.write() as session:
        if session.get(DeliveryRow, delivery.delivery_id) is not None:
            return False
        session.add(
            DeliveryRow(
                delivery_id=delivery.delivery_id,
                event=kind.value if kind is not None else "ignored",
                data={} if data is None else data.model_dump(mode="json"),
                received_at=now,
                status=DeliveryStatus.PENDING if kind is not None else DeliveryStatus.DONE,
                attempts=0,
            )
        )
        # SQLite serialises writers (BEGIN IMMEDIATE); on PostgreSQL a concurrent duplicate
        # fails the primary key at commit, which the caller sees as a StoreError (503) and
        # MLflow's retry then meets the stored row.
    return True


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What one sweep did."""

    versions: int
    resolved: int
    failed: int
    protected_checked: int
    protected_denied: int
    tags_written: int
    drifted: int = 0
    """Versions holding a protected target whose bytes no longer match their manifest."""


class MlflowIntegration:
    """Resolver, alias guard and MLflow client for one lifecycle."""

    def __init__(self, lifecycle: Lifecycle, client: MlflowClient, settings: Settings) -> None:
        """Wire the integration; ``settings.mlflow_tracking_uri`` must be set."""
        if not settings.mlflow_tracking_uri:
            raise ConfigError("mlflow_tracking_uri: required for the MLflow integration")
        self.lifecycle = lifecycle
        self.client = client
        self.settings = settings
        self.resolver = Resolver(
            lifecycle,
            client,
            tracking_uri=settings.mlflow_tracking_uri,
            staging_dir=settings.data_dir / "mlflow-staging",
            max_bytes=settings.mlflow_max_version_bytes,
        )
        self.guard = AliasGuard(
            lifecycle,
            client,
            protected=settings.mlflow_protected_aliases,
            remove=settings.mlflow_remove_unapproved_alias,
            facts=self.resolver.facts,
        )

    # --- webhook work ----------------------------------------------------------------------

    def pending(self) -> list[str]:
        """Delivery ids still to process, oldest first."""
        with self.lifecycle.store.read() as session:
            return list(
                session.execute(
                    select(DeliveryRow.delivery_id)
                    .where(DeliveryRow.status == DeliveryStatus.PENDING)
                    .order_by(DeliveryRow.received_at)
                ).scalars()
            )

    def process_pending(self) -> int:
        """Process every pending delivery; return how many this worker handled."""
        return sum(self.process(delivery_id) for delivery_id in self.pending())

    def process(self, delivery_id: str) -> bool:
        """Act on one stored delivery; failures are recorded and retried a few times.

        A delivery another worker has claimed (and whose lease has not run out) is left to it.
        Returns whether this call worked the delivery.
        """
        claimed = self._claim(delivery_id)
        if claimed is None:
            return False
        event, data = claimed
        error = ""
        try:
            self._act(EventKind(event), data)
        except (MamoriError, ValueError) as exc:
            error = exc.diagnostics() if isinstance(exc, MamoriError) else str(exc)
        with self.lifecycle.store.write() as session:
            row = session.get(DeliveryRow, delivery_id)
            if row is None:
                return True
            row.attempts += 1
            row.error = error or None
            row.claimed_until = None
            if not error or row.attempts >= _MAX_ATTEMPTS:
                row.status = DeliveryStatus.DONE if not error else DeliveryStatus.FAILED
                row.processed_at = datetime.now(UTC)
        if error:
            _log.warning("mlflow_delivery_failed", delivery_id=delivery_id, error=error)
        return True

    def _claim(self, delivery_id: str) -> tuple[str, dict[str, object]] | None:
        now = datetime.now(UTC)
        with self.lifecycle.store.write() as session:
            # One statement: on PostgreSQL a concurrent claim waits for this row and then sees
            # the lease; SQLite serialises writers. Whoever updates no row does not work it.
            taken = session.execute(
                update(DeliveryRow)
                .where(
                    DeliveryRow.delivery_id == delivery_id,
                    DeliveryRow.status == DeliveryStatus.PENDING,
                    or_(DeliveryRow.claimed_until.is_(None), DeliveryRow.claimed_until < now),
                )
                .values(claimed_until=now + _LEASE)
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                return None
            row = session.get(DeliveryRow, delivery_id)
            if row is None:
                return None
            return row.event, dict(row.data)

    def _act(self, kind: EventKind, data: dict[str, object]) -> None:
        if kind is EventKind.REGISTERED_MODEL_CREATED:
            return  # a new name has no bytes yet; its versions arrive as their own events
        versioned: dict[EventKind, type[ModelVersionData | TagData | PromptVersionData]] = {
            EventKind.MODEL_VERSION_CREATED: ModelVersionData,
            EventKind.MODEL_VERSION_TAG_SET: TagData,
            EventKind.PROMPT_VERSION_CREATED: PromptVersionData,
        }
        model = versioned.get(kind)
        if model is not None:
            # A created event for a version mamori bound before is a delete and re-create:
            # the resolver sees the changed identity and binds the new object's bytes.
            parsed = model.model_validate(data)
            self._resolve(parsed.name, parsed.version)
            return
        alias = AliasData.model_validate(data)  # a model or a prompt alias: same check
        result = self.resolver.resolve(alias.name, alias.version)
        if result.status is VersionStatus.GONE:
            return  # nothing to protect (MLflow's test deliveries name a model that is absent)
        protected = is_protected(alias.alias, self.settings.mlflow_protected_aliases)
        if protected and result.status is VersionStatus.RESOLVED:
            # The promotion gate compared only the listing (path, size): bytes replaced in
            # place with the same size before the promotion show only when hashed, so hash
            # now rather than at the next periodic re-verification (up to an hour later).
            self.resolver.rehash(alias.name, alias.version)
        # Checked even when resolution failed: an unbound version is denied, so a protected
        # alias on bytes mamori could not read is removed at once (fail closed).
        self.guard.check(Target(alias.name, alias.version, alias.alias), origin="webhook")
        if result.status is VersionStatus.FAILED:
            msg = f"resolving {alias.name}/{alias.version} failed: {result.error}"
            raise _RetryError(msg)

    def _resolve(self, name: str, version: str) -> Resolution:
        result = self.resolver.resolve(name, version)
        if result.status is VersionStatus.FAILED:
            msg = f"resolving {name}/{version} failed: {result.error}"
            raise _RetryError(msg)
        return result

    # --- sweep -----------------------------------------------------------------------------

    def plan(self, *, rescan: bool = False) -> SweepPlan:
        """One pass over the registry (see :func:`plan_sweep`)."""
        return plan_sweep(
            self.lifecycle, self.client, self.settings.mlflow_protected_aliases, rescan=rescan
        )

    def reverify(self, targets: tuple[Target, ...], *, older_than: timedelta) -> int:
        """Re-hash the versions behind ``targets`` last verified before ``older_than`` ago.

        Returns how many differed from their manifest (each is recorded as drift, so the
        guard then removes the alias or archives the stage).
        """
        cutoff = datetime.now(UTC) - older_than
        with self.lifecycle.store.read() as session:
            fresh = {
                (row.name, row.version)
                for row in session.execute(select(MlflowVersionRow)).scalars()
                if row.verified_at is not None and _aware(row.verified_at) > cutoff
            }
        keys = sorted({(t.name, t.version) for t in targets} - fresh)
        return sum(bool(self.resolver.rehash(name, version)) for name, version in keys)

    def sweep(
        self,
        *,
        rescan: bool = False,
        resolve: Callable[[str, str, bool], Resolution | None] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> SweepReport:
        """Resolve, re-verify, check protected targets and mirror verdicts.

        Resolves every unseen or changed version (all, when ``rescan``) and re-hashes the
        versions holding a protected target before checking those targets. ``resolve``
        replaces in-process resolution (the job queue passes one that enqueues).
        ``progress(done, total)`` is called after each version resolved (a display only).
        """
        plan = self.plan(rescan=rescan)
        here = lambda n, v, force: self.resolver.resolve(n, v, force=force)  # noqa: E731
        run = resolve or here
        # A version holding a protected target is bound here, before its target is checked:
        # checked while its (re)binding waits in the queue, it would lose its alias for
        # nothing more than a stale binding (e.g. one made before identities were recorded).
        protected = {(t.name, t.version) for t in plan.protected}
        resolved = failed = 0
        for done, (name, version) in enumerate(plan.to_resolve, start=1):
            result = (here if (name, version) in protected else run)(name, version, rescan)
            if progress is not None:
                progress(done, len(plan.to_resolve))
            if result is None:
                continue
            if result.status is VersionStatus.RESOLVED:
                resolved += 1
            else:
                failed += 1
        every = timedelta(minutes=self.settings.mlflow_reverify_minutes)
        drifted = self.reverify(plan.protected, older_than=every)
        denied = sum(not self.guard.check(t, origin="sweep") for t in plan.protected)
        tags = mirror_verdicts(self.lifecycle, self.client, plan.seen)
        self._forget_old_deliveries()
        return SweepReport(
            plan.versions, resolved, failed, len(plan.protected), denied, tags, drifted
        )

    def _forget_old_deliveries(self) -> None:
        # Rows older than the replay window can never be replayed (their timestamp is refused),
        # so keeping a week of them is ample for diagnosis.
        cutoff = datetime.now(UTC) - _KEEP_DELIVERIES
        with self.lifecycle.store.write() as session:
            session.execute(
                delete(DeliveryRow).where(
                    DeliveryRow.received_at < cutoff, DeliveryRow.status != DeliveryStatus.PENDING
                )
            )


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes for timezone-aware columns; they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class _RetryError(MamoriError):
    """A resolution failed in a way worth retrying (registry or download error)."""


# MLflow's client defaults (120 s per request, 7 retries with exponential backoff) hold a worker
# for many minutes on an unreachable server. These are MLflow's own variables: an operator who
# sets them keeps their values. MLflow reads them per request.
WORKER_HTTP_DEFAULTS: Final = MappingProxyType(
    {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }
)


def build_integration(settings: Settings, lifecycle: Lifecycle) -> MlflowIntegration:
    """The integration for ``settings`` over ``lifecycle`` (MLflow credentials from its env).

    Bounds MLflow's HTTP timeouts and retries for this process (see ``WORKER_HTTP_DEFAULTS``).
    """
    if not settings.mlflow_tracking_uri:
        raise ConfigError("mlflow_tracking_uri: set MAMORI_MLFLOW_TRACKING_URI")
    for name, value in WORKER_HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    client = MlflowClient(
        tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri
    )
    return MlflowIntegration(lifecycle, client, settings)
