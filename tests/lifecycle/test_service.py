"""The lifecycle: quarantine → scan → approve/reject → deployable, with Cedar and audit."""

from __future__ import annotations

import pickle
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from mamori.audit.chain import verify_chain
from mamori.errors import AccessDeniedError, InvalidStateError, NotFoundError, StoreError
from mamori.findings import Verdict
from mamori.lifecycle import Action, Lifecycle
from mamori.store import ApprovalDecision, ArtifactState, ScanStatus, audit_records
from mamori.store.models import AuditRow, FindingRow, ScanRow

from .conftest import BENIGN, MALICIOUS, make_principal

APPROVER = make_principal("alice", "approver")
ADMIN = make_principal("root", "admin")


def _audit(lifecycle: Lifecycle):
    with lifecycle.store.read() as session:
        return audit_records(session)


def test_an_import_is_quarantined_bound_audited_and_queued(lifecycle, upload, queued):
    sha = upload(BENIGN, name="tiny.pkl")
    view = lifecycle.get(sha)
    assert view.state is ArtifactState.QUARANTINED
    assert [(b.source, b.name) for b in view.bindings] == [("upload", "tiny.pkl")]
    assert queued == [sha]
    assert not view.deployable
    assert [r.action for r in _audit(lifecycle)] == ["import", "import"]


def test_an_import_needs_the_importer_role(lifecycle, tmp_path):
    path = tmp_path / "m.pkl"
    path.write_bytes(BENIGN)
    with pytest.raises(AccessDeniedError):
        lifecycle.import_file(make_principal("v", "viewer"), path)
    (record,) = _audit(lifecycle)
    assert record.decision == "deny"


def test_a_benign_model_scans_safe_and_the_scan_is_idempotent(lifecycle, upload):
    sha = upload(BENIGN)
    first = lifecycle.run_scan(sha)
    again = lifecycle.run_scan(sha)
    assert first is not None
    assert again is not None
    assert first.verdict == Verdict.SAFE.value
    assert again.id == first.id
    assert lifecycle.get(sha).state is ArtifactState.SAFE
    with lifecycle.store.read() as session:
        assert len(session.execute(select(ScanRow)).scalars().all()) == 1


def test_a_malicious_model_scans_unsafe_with_its_findings_stored(lifecycle, upload):
    sha = upload(MALICIOUS)
    scan = lifecycle.run_scan(sha)
    assert scan is not None
    assert scan.verdict == Verdict.UNSAFE.value
    assert lifecycle.get(sha).state is ArtifactState.UNSAFE
    with lifecycle.store.read() as session:
        rules = {f.rule_id for f in session.execute(select(FindingRow)).scalars()}
    assert any(r.startswith("MAM-PKL") for r in rules)
    report = lifecycle.scan_report(ADMIN, sha)
    assert report["sha256"] == sha


def test_an_approved_safe_model_passes_the_gate(lifecycle, upload):
    sha = upload(BENIGN)
    lifecycle.run_scan(sha)
    assert not lifecycle.gate(sha).allowed
    view = lifecycle.decide(APPROVER, sha, ApprovalDecision.APPROVED)
    assert view.state is ArtifactState.APPROVED
    assert view.deployable
    assert lifecycle.gate(sha, Action.DEPLOY).allowed


def test_four_eyes_an_approver_cannot_approve_what_they_imported(lifecycle, upload):
    sha = upload(BENIGN, by="alice")
    lifecycle.run_scan(sha)
    with pytest.raises(AccessDeniedError) as exc:
        lifecycle.decide(APPROVER, sha, ApprovalDecision.APPROVED)
    assert "four-eyes" in exc.value.policy_ids
    assert _audit(lifecycle)[-1].policy_ids == ("four-eyes",)
    assert lifecycle.get(sha).state is ArtifactState.SAFE


def test_approving_needs_an_mfa_claim(lifecycle, upload):
    sha = upload(BENIGN)
    lifecycle.run_scan(sha)
    with pytest.raises(AccessDeniedError) as exc:
        lifecycle.decide(
            make_principal("bob", "approver", mfa=False), sha, ApprovalDecision.APPROVED
        )
    assert exc.value.policy_ids == ("mfa-required",)


def test_an_unsafe_verdict_cannot_be_approved_only_overridden_by_an_admin_with_a_reason(
    lifecycle, upload
):
    sha = upload(MALICIOUS)
    lifecycle.run_scan(sha)
    with pytest.raises(AccessDeniedError):
        lifecycle.decide(APPROVER, sha, ApprovalDecision.APPROVED)
    with pytest.raises(AccessDeniedError):
        lifecycle.decide(ADMIN, sha, ApprovalDecision.OVERRIDE)
    with pytest.raises(AccessDeniedError):
        lifecycle.decide(APPROVER, sha, ApprovalDecision.OVERRIDE, reason="trust me")
    view = lifecycle.decide(ADMIN, sha, ApprovalDecision.OVERRIDE, reason="vendor signed, CVE-free")
    assert view.deployable
    last = _audit(lifecycle)[-1]
    assert (last.action, last.reason) == ("override", "vendor signed, CVE-free")


def test_a_decision_before_any_finished_scan_is_refused(lifecycle, upload):
    sha = upload(BENIGN)
    with pytest.raises(InvalidStateError, match="no finished scan"):
        lifecycle.decide(APPROVER, sha, ApprovalDecision.APPROVED)


def test_a_rejected_model_never_passes_the_gate(lifecycle, upload):
    sha = upload(BENIGN)
    lifecycle.run_scan(sha)
    lifecycle.decide(APPROVER, sha, ApprovalDecision.REJECTED, reason="licence")
    assert lifecycle.get(sha).state is ArtifactState.REJECTED
    assert not lifecycle.gate(sha).allowed


def test_a_new_ruleset_that_flags_an_approved_model_revokes_it(lifecycle, upload, monkeypatch):
    sha = upload(BENIGN)
    lifecycle.run_scan(sha)
    lifecycle.decide(APPROVER, sha, ApprovalDecision.APPROVED)
    assert lifecycle.gate(sha).allowed

    lifecycle.ruleset_version = "next"
    assert lifecycle.pending_scans() == [sha]
    assert not lifecycle.gate(sha).allowed  # not scanned under the new ruleset yet
    from mamori.lifecycle import service

    flagged = service.scan_path(lifecycle.blobs.path_for(sha), lifecycle.scan_policy)
    from dataclasses import replace

    from mamori.findings import Finding, Severity

    hostile = replace(flagged, findings=(Finding("MAM-PKL-001", Severity.CRITICAL, "new rule"),))
    monkeypatch.setattr(service, "scan_path", lambda *_a, **_k: hostile)
    lifecycle.run_scan(sha)
    view = lifecycle.get(sha)
    assert view.state is ArtifactState.UNSAFE
    assert "approval revoked" in view.state_reason
    gate = lifecycle.gate(sha)
    assert not gate.allowed
    assert "approval revoked" in gate.reason


def test_the_gate_denies_an_unknown_digest(lifecycle):
    gate = lifecycle.gate("0" * 64)
    assert not gate.allowed
    assert "unknown digest" in gate.reason


def test_a_crash_while_recording_a_scan_leaves_no_half_written_verdict(
    lifecycle, upload, monkeypatch
):
    sha = upload(MALICIOUS)
    from mamori.lifecycle import service

    def boom(*_a, **_k):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(service, "audit_append", boom)
    with pytest.raises(RuntimeError):
        lifecycle.run_scan(sha)
    with lifecycle.store.read() as session:
        (scan,) = session.execute(select(ScanRow)).scalars().all()
        assert scan.status is ScanStatus.RUNNING
        assert session.execute(select(FindingRow)).first() is None
    assert lifecycle.get(sha).state is ArtifactState.QUARANTINED


def test_a_stale_running_scan_is_handed_out_again_and_finishes_once(lifecycle, upload):
    sha = upload(BENIGN)
    old = datetime.now(UTC) - timedelta(hours=1)
    with lifecycle.store.write() as session:
        art_id = session.execute(select(ScanRow.artifact_id)).first()
        assert art_id is None
    # A worker claimed the scan and died: RUNNING with an old heartbeat.
    lifecycle.run_scan(sha)
    with lifecycle.store.write() as session:
        session.execute(
            update(ScanRow).values(status=ScanStatus.RUNNING, heartbeat_at=old, claim="dead")
        )
        session.execute(FindingRow.__table__.delete())
    assert lifecycle.pending_scans() == [sha]
    done = lifecycle.run_scan(sha)
    assert done is not None
    assert done.status is ScanStatus.DONE
    assert lifecycle.pending_scans() == []


def test_a_live_claim_is_not_taken_over(lifecycle, upload):
    sha = upload(BENIGN)
    lifecycle.run_scan(sha)
    with lifecycle.store.write() as session:
        session.execute(
            update(ScanRow).values(
                status=ScanStatus.RUNNING, heartbeat_at=datetime.now(UTC), claim="alive"
            )
        )
    assert lifecycle.run_scan(sha) is None


def test_the_audit_chain_verifies_and_tampering_is_detected(lifecycle, upload):
    sha = upload(BENIGN)
    lifecycle.run_scan(sha)
    lifecycle.decide(APPROVER, sha, ApprovalDecision.APPROVED)
    assert verify_chain(_audit(lifecycle)) == len(_audit(lifecycle))
    with lifecycle.store.write() as session:
        session.execute(update(AuditRow).where(AuditRow.seq == 2).values(reason="nothing"))
    with pytest.raises(StoreError, match="broken at record 3"):
        verify_chain(_audit(lifecycle))


def test_viewing_an_unknown_or_forbidden_artifact_looks_the_same(lifecycle, upload):
    sha = upload(BENIGN)
    nobody = make_principal("eve")
    with pytest.raises(NotFoundError) as forbidden:
        lifecycle.view(nobody, sha)
    with pytest.raises(NotFoundError) as unknown:
        lifecycle.view(make_principal("x", "viewer"), "f" * 64)
    assert str(forbidden.value).replace(sha, "X") == str(unknown.value).replace("f" * 64, "X")


def test_listing_filters_by_state_verdict_and_source(lifecycle, upload):
    good = upload(BENIGN)
    bad = upload(MALICIOUS)
    lifecycle.run_scan(good)
    lifecycle.run_scan(bad)
    viewer = make_principal("v", "viewer")
    assert lifecycle.list_artifacts(viewer).total == 2
    unsafe = lifecycle.list_artifacts(viewer, verdict=Verdict.UNSAFE)
    assert [a.sha256 for a in unsafe.items] == [bad]
    assert lifecycle.list_artifacts(viewer, state=ArtifactState.SAFE).items[0].sha256 == good
    assert lifecycle.list_artifacts(viewer, source="hf").total == 0
    page = lifecycle.list_artifacts(viewer, limit=1, offset=1)
    assert (len(page.items), page.total) == (1, 2)


def test_twenty_parallel_imports_lose_nothing(lifecycle, tmp_path):
    importer = make_principal("ci", "importer")
    errors: list[BaseException] = []

    def work(i: int) -> None:
        path = tmp_path / f"m{i}.pkl"
        path.write_bytes(BENIGN + bytes([i]))
        try:
            lifecycle.import_file(importer, path)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert lifecycle.list_artifacts(importer, limit=100).total == 20
    # two records per import (the allow decision, the quarantine) plus the listing's view
    assert verify_chain(_audit(lifecycle)) == 41


def test_a_long_scan_keeps_its_claim_alive_with_heartbeats(lifecycle, upload, monkeypatch):
    sha = upload(BENIGN)
    lifecycle.heartbeat_every = timedelta(milliseconds=20)
    from mamori.lifecycle import service

    real_scan = service.scan_path
    beats: list[datetime] = []

    def slow_scan(path, policy, *, progress):
        import time

        progress(50, 100)
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            with lifecycle.store.read() as session:
                row = session.execute(select(ScanRow)).scalar_one()
                if row.heartbeat_at is not None:
                    beats.append(row.heartbeat_at)
            time.sleep(0.02)
        return real_scan(path, policy)

    monkeypatch.setattr(service, "scan_path", slow_scan)
    reported: list[float] = []
    scan = lifecycle.run_scan(sha, progress=reported.append)
    assert scan is not None
    assert scan.status is ScanStatus.DONE
    assert len(set(beats)) >= 3  # the heartbeat moved while the scan ran
    assert 0.5 in reported
    assert reported[-1] == 1.0


def test_a_registry_version_is_deployable_only_when_every_bound_artifact_is(lifecycle, tmp_path):
    importer = make_principal("ivan", "importer")
    files = {"model.pkl": BENIGN, "extra.pkl": pickle.dumps([1, 2, 3])}
    digests = []
    for member, data in files.items():
        path = tmp_path / member
        path.write_bytes(data)
        blob = lifecycle.blobs.put_file(path)
        lifecycle.register(
            importer, blob, source="mlflow", name="fraud", version="3", member_path=member
        )
        digests.append(blob.sha256)
    assert not lifecycle.gate_binding("mlflow", "fraud", "3").allowed
    for sha in digests:
        lifecycle.run_scan(sha)
    lifecycle.decide(APPROVER, digests[0], ApprovalDecision.APPROVED)
    partial = lifecycle.gate_binding("mlflow", "fraud", "3")
    assert not partial.allowed
    assert digests[1][:12] in partial.reason
    lifecycle.decide(APPROVER, digests[1], ApprovalDecision.APPROVED)
    assert lifecycle.gate_binding("mlflow", "fraud", "3").allowed
    unknown = lifecycle.gate_binding("mlflow", "fraud", "4")
    assert not unknown.allowed
    assert "never been scanned" in unknown.reason
