"""The model lifecycle: import → scan → approve/reject → deployable, and the gate.

The store is the source of truth and the job queue is only a doorbell: a scan is claimed in
the store before it runs and finished in one transaction with its findings, state change and
audit record. A worker killed mid-scan leaves a RUNNING row whose heartbeat goes stale;
:meth:`Lifecycle.pending_scans` hands it out again, and the unique (artifact, ruleset) row
means a retried job can never produce a second verdict.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final, Self

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from mamori.audit.chain import AuditRecord
from mamori.errors import AccessDeniedError, InvalidStateError, NotFoundError, StoreError
from mamori.findings import ScanReport, Severity, Verdict
from mamori.identity.principal import Principal
from mamori.lifecycle.authz import Action, ArtifactFacts, LifecycleAuthorizer
from mamori.lifecycle.blobs import BlobStore, StoredBlob
from mamori.lifecycle.summary import Summary, summarize
from mamori.lifecycle.views import (
    ApprovalView,
    ArtifactView,
    GateResult,
    Page,
    ScanView,
    artifact_view,
)
from mamori.policy.engine import Decision
from mamori.scan import RULESET_VERSION, ScanPolicy, scan_path
from mamori.scan.report.schema import build_document
from mamori.store.auditlog import iter_audit
from mamori.store.db import Store, audit_append
from mamori.store.models import (
    ApprovalDecision,
    ApprovalRow,
    ArtifactRow,
    ArtifactState,
    BindingRow,
    FindingRow,
    ScanRow,
    ScanStatus,
)
from mamori.text import check_name, printable

__all__ = ["SCANNER_PRINCIPAL", "Lifecycle"]

SCANNER_PRINCIPAL: Final = "mamori|scanner"
"""How the scanner itself appears in the audit log."""

_HEARTBEAT_STALE: Final = timedelta(minutes=2)
_HEARTBEAT_EVERY: Final = timedelta(seconds=15)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes even for timezone-aware columns; they were written UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _check_names(**names: str) -> None:
    """The one name rule (:mod:`mamori.text`) for everything a binding stores."""
    for what, value in names.items():
        if value or what in {"source", "name"}:
            check_name(value, what=what)


def _who(principal: Principal) -> str:
    return f"{principal.issuer}|{principal.subject}"


class Lifecycle:
    """The lifecycle operations. The CLI, the API and the workers all go through here."""

    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        authz: LifecycleAuthorizer,
        *,
        scan_policy: ScanPolicy | None = None,
        enqueue: Callable[[str], None] | None = None,
        ruleset_version: str = RULESET_VERSION,
        stale_after: timedelta = _HEARTBEAT_STALE,
        heartbeat_every: timedelta = _HEARTBEAT_EVERY,
    ) -> None:
        """Wire the store, the quarantine, the policies and (optionally) the job queue.

        A RUNNING scan whose worker has not sent a heartbeat for ``stale_after`` is presumed
        dead and may be claimed again; workers beat every ``heartbeat_every``.
        """
        self.store = store
        self.blobs = blobs
        self.authz = authz
        self.scan_policy = scan_policy or ScanPolicy()
        self.enqueue = enqueue
        self.ruleset_version = ruleset_version
        self.stale_after = stale_after
        self.heartbeat_every = heartbeat_every

    # --- authorization ---------------------------------------------------------------------

    def _authorize(
        self,
        principal: Principal,
        action: Action,
        artifact: ArtifactFacts | None,
        *,
        reason: str = "",
    ) -> tuple[str, ...]:
        """Decide; audit the decision in its own transaction; raise on deny."""
        # A deny raises out of the transaction after its audit record was written; the
        # session commits that record because AccessDeniedError is not an SQLAlchemy error.
        with self.store.write() as session:
            try:
                decision = self.authz.require(session, principal, action, artifact, reason=reason)
            except AccessDeniedError as exc:
                denied = exc
            else:
                return decision.policy_ids
        raise denied

    def _facts(self, session: Session, row: ArtifactRow) -> ArtifactFacts:
        latest = self._latest_scan(session, row)
        return ArtifactFacts(
            sha256=row.sha256,
            imported_by=row.imported_by,
            imported_by_issuer=row.imported_by_issuer,
            state=row.state.value,
            verdict=(latest.verdict or "") if latest is not None else "",
            deployable=self._deployable(session, row, latest),
        )

    # --- import ----------------------------------------------------------------------------

    def import_stream(
        self,
        principal: Principal,
        stream: IO[bytes],
        *,
        name: str,
        source: str = "upload",
        version: str = "",
        max_bytes: int | None = None,
    ) -> ArtifactView:
        """Quarantine an upload, register it and queue its scan."""
        self._authorize(principal, Action.IMPORT, None)
        _check_names(source=source, name=name, version=version)
        blob = self.blobs.put_stream(stream, max_bytes=max_bytes)
        return self.register(principal, blob, source=source, name=name, version=version)

    def import_file(
        self, principal: Principal, path: Path, *, name: str | None = None, source: str = "upload"
    ) -> ArtifactView:
        """Quarantine a local file, register it and queue its scan."""
        self._authorize(principal, Action.IMPORT, None)
        name = name or path.name
        _check_names(source=source, name=name)
        blob = self.blobs.put_file(path)
        return self.register(principal, blob, source=source, name=name)

    def register(
        self,
        principal: Principal,
        blob: StoredBlob,
        *,
        source: str,
        name: str,
        version: str = "",
        alias: str | None = None,
        member_path: str = "",
    ) -> ArtifactView:
        """Record a quarantined blob and its binding; queue a scan unless one is done.

        The caller must already have authorized the import (integrations call this after
        their own checks). Every name (``name``, ``version``, ``source``, ``member_path``)
        must pass :func:`mamori.text.check_name`, whichever integration it came from.
        """
        _check_names(source=source, name=name, version=version, member_path=member_path)
        now = _now()
        with self.store.write() as session:
            row = self._find_artifact(session, blob.sha256)
            if row is None:
                row = ArtifactRow(
                    sha256=blob.sha256,
                    size=blob.size,
                    format="unknown",
                    state=ArtifactState.QUARANTINED,
                    state_reason="waiting for its first scan",
                    imported_by=principal.subject,
                    imported_by_issuer=principal.issuer,
                    created_at=now,
                    updated_at=now,
                    stored_path=str(blob.path),
                )
                session.add(row)
                session.flush()
                audit_append(
                    session,
                    principal=_who(principal),
                    action="import",
                    resource=blob.sha256,
                    decision="quarantined",
                    reason=f"{source}:{name}@{version}" if version else f"{source}:{name}",
                )
            exists = session.execute(
                select(BindingRow.id).where(
                    BindingRow.artifact_id == row.id,
                    BindingRow.source == source,
                    BindingRow.name == name,
                    BindingRow.version == version,
                )
            ).first()
            if exists is None:
                session.add(
                    BindingRow(
                        artifact_id=row.id,
                        source=source,
                        name=name,
                        version=version,
                        alias=alias,
                        member_path=member_path,
                        created_by=_who(principal),
                        created_at=now,
                    )
                )
            needs_scan = self._current_done_scan(session, row) is None
        if needs_scan and self.enqueue is not None:
            self.enqueue(blob.sha256)
        return self.get(blob.sha256)

    # --- scanning (the worker side) --------------------------------------------------------

    def run_scan(
        self, sha256: str, *, progress: Callable[[float], None] | None = None
    ) -> ScanView | None:
        """Scan a quarantined artifact under the current ruleset, exactly once.

        Returns the finished scan, or ``None`` when another live worker holds the claim.
        """
        claim = secrets.token_hex(16)
        with self.store.write() as session:
            row = self._artifact_row(session, sha256)
            scan = self._scan_row(session, row)
            if scan is not None and scan.status is ScanStatus.DONE:
                return ScanView.of(scan, sha256)
            beat = _aware(scan.heartbeat_at) if scan is not None else None
            if (
                scan is not None
                and scan.status is ScanStatus.RUNNING
                and beat is not None
                and _now() - beat < self.stale_after
            ):
                return None
            if scan is None:
                scan = ScanRow(
                    artifact_id=row.id,
                    ruleset_version=self.ruleset_version,
                    scanner_version="",
                    status=ScanStatus.RUNNING,
                    created_at=_now(),
                )
                session.add(scan)
            scan.status = ScanStatus.RUNNING
            scan.claim = claim
            scan.heartbeat_at = _now()
            scan.error = None
            path = Path(row.stored_path or self.blobs.path_for(sha256))
            try:
                session.flush()
            except IntegrityError:
                return None  # a concurrent worker inserted the row first; it owns the scan
        if progress is not None:
            progress(0.0)
        heartbeat = _Heartbeat(self, sha256, claim, progress)
        try:
            with heartbeat:
                report = scan_path(path, self.scan_policy, progress=heartbeat.update)
        except Exception as exc:  # noqa: BLE001 - any failure is recorded; fail closed
            return self._fail_scan(sha256, claim, f"{type(exc).__name__}: {exc}")
        if report.sha256 != sha256:
            return self._fail_scan(
                sha256, claim, f"quarantined bytes changed: digest is now {report.sha256}"
            )
        view = self._finish_scan(sha256, claim, report)
        if progress is not None:
            progress(1.0)
        return view

    def beat(self, sha256: str, claim: str, fraction: float) -> bool:
        """Refresh a running scan's heartbeat and progress; False when the claim was lost."""
        with self.store.write() as session:
            scan = self._scan_row(session, self._artifact_row(session, sha256))
            if scan is None or scan.claim != claim or scan.status is not ScanStatus.RUNNING:
                return False
            scan.heartbeat_at = _now()
            scan.progress = fraction
            return True

    def _fail_scan(self, sha256: str, claim: str, error: str) -> ScanView | None:
        with self.store.write() as session:
            row = self._artifact_row(session, sha256)
            scan = self._scan_row(session, row)
            if scan is None or scan.claim != claim:
                return None
            scan.status = ScanStatus.FAILED
            scan.error = error
            scan.finished_at = _now()
            audit_append(
                session,
                principal=SCANNER_PRINCIPAL,
                action="scan",
                resource=sha256,
                decision="failed",
                reason=error,
            )
            return ScanView.of(scan, sha256)

    def _finish_scan(self, sha256: str, claim: str, report: ScanReport) -> ScanView | None:
        document = build_document([report]).model_dump(mode="json")["reports"][0]
        top = report.max_severity
        with self.store.write() as session:
            row = self._artifact_row(session, sha256)
            scan = self._scan_row(session, row)
            if scan is None or scan.claim != claim:
                return None  # our claim was taken over after we went stale: drop our result
            scan.status = ScanStatus.DONE
            scan.scanner_version = report.scanner_version
            scan.verdict = report.verdict.value
            scan.max_severity = None if top is None else top.label
            scan.duration_s = report.duration_s
            scan.progress = 1.0
            scan.report = document
            scan.finished_at = _now()
            for f in report.findings:
                scan.findings.append(
                    FindingRow(
                        rule_id=f.rule_id,
                        severity=f.severity.label,
                        severity_rank=int(f.severity),
                        message=f.message,
                        member="!".join(f.location.member),
                        offset=f.location.offset,
                        evidence=f.evidence,
                    )
                )
            row.format = report.format.value
            self._transition_after_scan(session, row, report)
            return ScanView.of(scan, sha256)

    def _transition_after_scan(
        self, session: Session, row: ArtifactRow, report: ScanReport
    ) -> None:
        before = row.state
        after: ArtifactState
        safe = report.verdict is Verdict.SAFE
        worst = ", ".join(
            sorted({f.rule_id for f in report.findings if f.severity >= report.threshold})
        )
        if before is ArtifactState.REJECTED:
            after, reason = before, row.state_reason
        elif safe:
            after = (
                ArtifactState.APPROVED if before is ArtifactState.APPROVED else ArtifactState.SAFE
            )
            reason = f"SAFE under ruleset {self.ruleset_version}"
        elif before is ArtifactState.APPROVED:
            after = ArtifactState.UNSAFE
            reason = f"approval revoked: ruleset {self.ruleset_version} found {worst}"
        else:
            after = ArtifactState.UNSAFE
            reason = f"UNSAFE under ruleset {self.ruleset_version}: {worst}"
        row.state, row.state_reason, row.updated_at = after, reason, _now()
        audit_append(
            session,
            principal=SCANNER_PRINCIPAL,
            action="scan",
            resource=row.sha256,
            decision=report.verdict.value,
            reason=f"{before.value} -> {after.value}: {reason}",
        )

    def pending_scans(self) -> list[str]:
        """Digests that need a scan: never scanned under this ruleset, failed, or stale."""
        cutoff = _now() - self.stale_after
        with self.store.read() as session:
            done_or_live = select(ScanRow.artifact_id).where(
                ScanRow.ruleset_version == self.ruleset_version,
                (ScanRow.status == ScanStatus.DONE)
                | ((ScanRow.status == ScanStatus.RUNNING) & (ScanRow.heartbeat_at >= cutoff)),
            )
            rows = session.execute(
                select(ArtifactRow.sha256)
                .where(ArtifactRow.id.not_in(done_or_live))
                .order_by(ArtifactRow.id)
            )
            return [sha for (sha,) in rows]

    # --- decisions -------------------------------------------------------------------------

    def decide(
        self,
        principal: Principal,
        sha256: str,
        decision: ApprovalDecision,
        *,
        reason: str = "",
    ) -> ArtifactView:
        """Approve, reject or (admin) override; Cedar decides who may, the store records it."""
        action = {
            ApprovalDecision.APPROVED: Action.APPROVE,
            ApprovalDecision.REJECTED: Action.REJECT,
            ApprovalDecision.OVERRIDE: Action.OVERRIDE,
        }[decision]
        with self.store.read() as session:
            row = self._artifact_row(session, sha256)
            facts = self._facts(session, row)
            latest = self._latest_scan(session, row)
            latest_id = None if latest is None else latest.id
            finished = latest is not None and latest.status is ScanStatus.DONE
        if not finished:
            msg = f"{sha256[:12]} has no finished scan under ruleset {self.ruleset_version}"
            raise InvalidStateError(msg)
        policy_ids = self._authorize(principal, action, facts, reason=reason)
        now = _now()
        with self.store.write() as session:
            row = self._artifact_row(session, sha256)
            scan = self._latest_scan(session, row)
            if scan is None or latest_id != scan.id:
                msg = f"{sha256[:12]} was rescanned while the decision was made; decide again"
                raise InvalidStateError(msg)
            session.add(
                ApprovalRow(
                    artifact_id=row.id,
                    scan_id=scan.id,
                    decision=decision,
                    actor=_who(principal),
                    reason=reason,
                    policy_ids=list(policy_ids),
                    created_at=now,
                )
            )
            before = row.state
            row.state = (
                ArtifactState.REJECTED
                if decision is ApprovalDecision.REJECTED
                else ArtifactState.APPROVED
            )
            row.state_reason = printable(
                f"{decision.value} by {principal.subject}" + (f": {reason}" if reason else "")
            )
            row.updated_at = now
            audit_append(
                session,
                principal=_who(principal),
                action=action.value,
                resource=sha256,
                decision=f"{before.value} -> {row.state.value}",
                policy_ids=policy_ids,
                reason=reason,
            )
        return self.get(sha256)

    # --- the gate --------------------------------------------------------------------------

    def gate(self, sha256: str, action: Action = Action.DEPLOY) -> GateResult:
        """May these exact bytes be deployed (or invoked)? A fast, read-only answer.

        One SQL round trip: the gate sits in front of every promotion and every serving
        start, so it reads only the columns the decision needs.
        """
        if action not in {Action.DEPLOY, Action.INVOKE}:
            return GateResult(allowed=False, reason=f"the gate answers deploy/invoke, not {action}")
        try:
            with self.store.read() as session:
                found = session.execute(
                    _GATE_BY_DIGEST, {"sha256": sha256, "ruleset": self.ruleset_version}
                ).first()
        except StoreError as exc:
            return GateResult(allowed=False, reason=f"store unavailable: {exc.diagnostics()}")
        if found is None:
            return GateResult(allowed=False, reason="unknown digest: never imported or scanned")
        return self._gate_row(found)

    def _gate_row(self, found: Any) -> GateResult:  # a Row of _GATE_QUERY
        state, state_reason, scan_id, status, verdict, decision, approved_scan = found[:7]
        facts = _GateFacts(state, scan_id, status, verdict, decision, approved_scan)
        if facts.deployable():
            return GateResult(allowed=True, reason=f"{state.value}: {state_reason}", state=state)
        if status is not ScanStatus.DONE:
            reason = f"not scanned under ruleset {self.ruleset_version}"
        elif state is ArtifactState.APPROVED:
            reason = f"approved, but its scan under ruleset {self.ruleset_version} is {verdict}"
        else:
            reason = f"{state.value}: {state_reason}"
        return GateResult(allowed=False, reason=reason, state=state)

    def gate_binding(
        self, source: str, name: str, version: str, action: Action = Action.DEPLOY
    ) -> GateResult:
        """May this registry version (every artifact bound to it) be deployed?

        A version with no bound artifact is denied: mamori has never seen its bytes. One SQL
        round trip for all of them, as for :meth:`gate`.
        """
        if action not in {Action.DEPLOY, Action.INVOKE}:
            return GateResult(allowed=False, reason=f"the gate answers deploy/invoke, not {action}")
        try:
            with self.store.read() as session:
                rows = session.execute(
                    _GATE_BY_BINDING,
                    {
                        "source": source,
                        "name": name,
                        "version": version,
                        "ruleset": self.ruleset_version,
                    },
                ).all()
        except StoreError as exc:
            return GateResult(allowed=False, reason=f"store unavailable: {exc.diagnostics()}")
        if not rows:
            return GateResult(
                allowed=False, reason=f"{source}:{name}/{version} has never been scanned by mamori"
            )
        for row in rows:
            result = self._gate_row(row)
            if not result.allowed:
                return GateResult(
                    allowed=False,
                    reason=f"artifact {row.sha256[:12]}: {result.reason}",
                    state=result.state,
                )
        return GateResult(
            allowed=True,
            reason=f"all {len(rows)} artifact(s) of {source}:{name}/{version} are deployable",
        )

    def _deployable(self, session: Session, row: ArtifactRow, latest: ScanRow | None) -> bool:
        approval = session.execute(
            select(ApprovalRow)
            .where(ApprovalRow.artifact_id == row.id)
            .order_by(ApprovalRow.id.desc())
            .limit(1)
        ).scalar()
        return _GateFacts(
            state=row.state,
            scan_id=None if latest is None else latest.id,
            scan_status=None if latest is None else latest.status,
            verdict=None if latest is None else latest.verdict,
            decision=None if approval is None else approval.decision,
            approved_scan=None if approval is None else approval.scan_id,
        ).deployable()

    # --- reading ---------------------------------------------------------------------------

    def get(self, sha256: str) -> ArtifactView:
        """The artifact with this digest (no authorization: internal use and the gate)."""
        with self.store.read() as session:
            row = self._artifact_row(session, sha256)
            latest = self._latest_scan(session, row)
            return artifact_view(row, latest, deployable=self._deployable(session, row, latest))

    def view(self, principal: Principal, sha256: str) -> ArtifactView:
        """The artifact, if the caller may view it; unknown and forbidden look the same."""
        try:
            with self.store.read() as session:
                facts = self._facts(session, self._artifact_row(session, sha256))
            self._authorize(principal, Action.VIEW, facts)
        except AccessDeniedError as exc:
            msg = f"no artifact {sha256[:64]}"
            raise NotFoundError(msg) from exc
        return self.get(sha256)

    def list_artifacts(
        self,
        principal: Principal,
        *,
        state: ArtifactState | None = None,
        verdict: Verdict | None = None,
        source: str | None = None,
        since: datetime | None = None,
        min_severity: Severity | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[ArtifactView]:
        """Artifacts matching every given filter, newest first."""
        self._authorize(principal, Action.VIEW, None)
        query = select(ArtifactRow).options(selectinload(ArtifactRow.bindings))
        if state is not None:
            query = query.where(ArtifactRow.state == state)
        if source is not None:
            query = query.where(
                ArtifactRow.id.in_(
                    select(BindingRow.artifact_id).where(BindingRow.source == source)
                )
            )
        if since is not None:
            query = query.where(ArtifactRow.created_at >= since)
        current = select(ScanRow).where(
            ScanRow.ruleset_version == self.ruleset_version, ScanRow.status == ScanStatus.DONE
        )
        if verdict is not None:
            query = query.where(
                ArtifactRow.id.in_(
                    current.where(ScanRow.verdict == verdict.value).with_only_columns(
                        ScanRow.artifact_id
                    )
                )
            )
        if min_severity is not None:
            with_findings = (
                select(ScanRow.artifact_id)
                .join(FindingRow, FindingRow.scan_id == ScanRow.id)
                .where(
                    ScanRow.ruleset_version == self.ruleset_version,
                    FindingRow.severity_rank >= int(min_severity),
                )
            )
            query = query.where(ArtifactRow.id.in_(with_findings))
        with self.store.read() as session:
            total = session.execute(
                select(func.count()).select_from(query.order_by(None).subquery())
            ).scalar_one()
            rows = session.execute(
                query.order_by(ArtifactRow.id.desc()).limit(limit).offset(offset)
            ).scalars()
            items = []
            for row in rows:
                latest = self._latest_scan(session, row)
                items.append(
                    artifact_view(row, latest, deployable=self._deployable(session, row, latest))
                )
        return Page(tuple(items), int(total), limit, offset)

    def scan_report(self, principal: Principal, sha256: str) -> dict[str, object]:
        """The stored JSON report of the newest finished scan."""
        self.view(principal, sha256)
        with self.store.read() as session:
            row = self._artifact_row(session, sha256)
            latest = self._latest_scan(session, row)
            if latest is None or latest.report is None:
                msg = f"no finished scan for {sha256[:64]}"
                raise NotFoundError(msg)
            return dict(latest.report)

    def summary(self, principal: Principal, *, days: int = 14) -> Summary:
        """Counts by state, verdict, severity and source, and scans per day (viewers)."""
        self._authorize(principal, Action.VIEW, None)
        with self.store.read() as session:
            return summarize(session, self.ruleset_version, days=days)

    def approvals(self, principal: Principal, sha256: str) -> tuple[ApprovalView, ...]:
        """Every decision on the artifact, oldest first, if the caller may view it."""
        self.view(principal, sha256)
        with self.store.read() as session:
            row = self._artifact_row(session, sha256)
            found = session.execute(
                select(ApprovalRow)
                .where(ApprovalRow.artifact_id == row.id)
                .order_by(ApprovalRow.id)
            ).scalars()
            return tuple(ApprovalView.of(a) for a in found)

    def preview(self, principal: Principal, sha256: str, action: Action) -> Decision:
        """What Cedar would answer ``principal`` for ``action`` on the artifact now.

        Not audited and not enforcing: it lets a screen disable a button with the policy's
        reason. The action itself is decided (and audited) again when it is requested.
        """
        with self.store.read() as session:
            facts = self._facts(session, self._artifact_row(session, sha256))
        return self.authz.decide(principal, action, facts)

    def audit(self, principal: Principal, *, after: int = 0) -> Iterator[AuditRecord]:
        """Audit records after ``after``, for export (admins only)."""
        self._authorize(principal, Action.ADMIN, None)
        return iter_audit(self.store, after=after)

    # --- row helpers -----------------------------------------------------------------------

    def _find_artifact(self, session: Session, sha256: str) -> ArtifactRow | None:
        return session.execute(
            select(ArtifactRow)
            .where(ArtifactRow.sha256 == sha256)
            .options(selectinload(ArtifactRow.bindings))
        ).scalar()

    def _artifact_row(self, session: Session, sha256: str) -> ArtifactRow:
        row = self._find_artifact(session, sha256)
        if row is None:
            msg = f"no artifact {sha256[:64]}"
            raise NotFoundError(msg)
        return row

    def _scan_row(self, session: Session, row: ArtifactRow) -> ScanRow | None:
        return session.execute(
            select(ScanRow).where(
                ScanRow.artifact_id == row.id, ScanRow.ruleset_version == self.ruleset_version
            )
        ).scalar()

    def _latest_scan(self, session: Session, row: ArtifactRow) -> ScanRow | None:
        return self._scan_row(session, row)

    def _current_done_scan(self, session: Session, row: ArtifactRow) -> ScanRow | None:
        scan = self._scan_row(session, row)
        return scan if scan is not None and scan.status is ScanStatus.DONE else None


# Built once: constructing the expression cost as much CPU as running it.
_LATEST_APPROVAL = (
    select(ApprovalRow.id)
    .where(ApprovalRow.artifact_id == ArtifactRow.id)
    .order_by(ApprovalRow.id.desc())
    .limit(1)
    .correlate(ArtifactRow)
    .scalar_subquery()
)
_GATE_QUERY: Final = (
    select(
        ArtifactRow.state,
        ArtifactRow.state_reason,
        ScanRow.id,
        ScanRow.status,
        ScanRow.verdict,
        ApprovalRow.decision,
        ApprovalRow.scan_id,
    )
    .outerjoin(
        ScanRow,
        (ScanRow.artifact_id == ArtifactRow.id) & (ScanRow.ruleset_version == bindparam("ruleset")),
    )
    .outerjoin(ApprovalRow, ApprovalRow.id == _LATEST_APPROVAL)
)
_GATE_BY_DIGEST: Final = _GATE_QUERY.where(ArtifactRow.sha256 == bindparam("sha256"))
_GATE_BY_BINDING: Final = (
    _GATE_QUERY.add_columns(ArtifactRow.sha256)
    .join(BindingRow, BindingRow.artifact_id == ArtifactRow.id)
    .where(
        BindingRow.source == bindparam("source"),
        BindingRow.name == bindparam("name"),
        BindingRow.version == bindparam("version"),
    )
    .order_by(BindingRow.member_path, ArtifactRow.sha256)
)


@dataclass(frozen=True, slots=True)
class _GateFacts:
    """The columns deployability depends on; one rule for the gate and the views."""

    state: ArtifactState
    scan_id: int | None
    scan_status: ScanStatus | None
    verdict: str | None
    decision: ApprovalDecision | None
    approved_scan: int | None

    def deployable(self) -> bool:
        """Approved, scanned under the current ruleset, and SAFE or overridden for that scan."""
        if self.state is not ArtifactState.APPROVED or self.scan_status is not ScanStatus.DONE:
            return False
        if self.decision is None or self.decision is ApprovalDecision.REJECTED:
            return False
        if self.verdict == Verdict.SAFE.value:
            return True
        # An override covers exactly the scan it was decided on, not a later ruleset's verdict.
        return self.decision is ApprovalDecision.OVERRIDE and self.approved_scan == self.scan_id


class _Heartbeat:
    """Keeps a claim alive from a side thread while the scan runs, and reports progress."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        sha256: str,
        claim: str,
        progress: Callable[[float], None] | None,
    ) -> None:
        self._lifecycle = lifecycle
        self._sha256 = sha256
        self._claim = claim
        self._progress = progress
        self._fraction = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mamori-heartbeat", daemon=True)

    def update(self, done: int, total: int | None) -> None:
        """Progress callback for :func:`mamori.scan.scan_path` (never reaches 1.0 early)."""
        if total:
            self._fraction = min(0.99, done / total)

    def _run(self) -> None:
        interval = self._lifecycle.heartbeat_every.total_seconds()
        while not self._stop.wait(interval):
            try:
                alive = self._lifecycle.beat(self._sha256, self._claim, self._fraction)
            except StoreError:
                continue  # the next beat retries; a long outage makes the claim go stale
            if self._progress is not None:
                self._progress(self._fraction)
            if not alive:
                return

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
