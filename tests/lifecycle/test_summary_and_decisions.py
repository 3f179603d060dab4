"""The lifecycle reads the console needs: summary counts, decision history, decision preview."""

from __future__ import annotations

import itertools

import pytest

from mamori.errors import AccessDeniedError, NotFoundError
from mamori.lifecycle import Action
from mamori.store.models import ApprovalDecision, ArtifactState

from .conftest import BENIGN, MALICIOUS, make_principal

VIEWER = make_principal("vera", "viewer")


def test_the_summary_counts_by_state_verdict_severity_and_source(lifecycle, upload):
    lifecycle.run_scan(upload(BENIGN))
    lifecycle.run_scan(upload(MALICIOUS, name="evil.pkl"))
    upload(b"\x80\x04K\x07.", name="queued.pkl")  # imported, not scanned yet
    summary = lifecycle.summary(VIEWER)
    assert summary.artifacts == 3
    assert summary.count(ArtifactState.SAFE) == 1
    assert summary.count(ArtifactState.UNSAFE) == 1
    assert summary.count(ArtifactState.QUARANTINED) == 1
    assert dict(summary.by_verdict) == {"safe": 1, "unsafe": 1}
    assert dict(summary.by_severity)["critical"] == 1
    assert dict(summary.by_source) == {"upload": 3}


def test_the_scan_trend_has_every_day_and_counts_todays_scans(lifecycle, upload):
    lifecycle.run_scan(upload(BENIGN))
    trend = lifecycle.summary(VIEWER, days=7).scans_per_day
    assert len(trend) == 7
    assert [(b - a).days for (a, _), (b, _) in itertools.pairwise(trend)] == [1] * 6
    assert trend[-1][1] == 1
    assert sum(n for _, n in trend) == 1


def test_the_summary_is_refused_to_a_principal_without_a_role(lifecycle):
    with pytest.raises(AccessDeniedError):
        lifecycle.summary(make_principal("nobody"))


def test_the_decision_history_lists_each_decision_with_its_policies(lifecycle, upload):
    sha = upload(BENIGN)
    lifecycle.run_scan(sha)
    approver = make_principal("ana", "approver")
    lifecycle.decide(approver, sha, ApprovalDecision.APPROVED, reason="looked fine")
    history = lifecycle.approvals(VIEWER, sha)
    assert [(a.decision, a.reason) for a in history] == [(ApprovalDecision.APPROVED, "looked fine")]
    assert history[0].actor.endswith("|ana")
    assert history[0].policy_ids


def test_the_decision_history_of_an_unknown_artifact_is_not_found(lifecycle):
    with pytest.raises(NotFoundError):
        lifecycle.approvals(VIEWER, "0" * 64)


def test_a_preview_gives_the_policy_answer_the_decision_itself_will_get(lifecycle, upload):
    sha = upload(BENIGN, by="ivan")
    lifecycle.run_scan(sha)
    importer = make_principal("ivan", "importer", "approver")
    preview = lifecycle.preview(importer, sha, Action.APPROVE)
    assert not preview.allowed
    with pytest.raises(AccessDeniedError):
        lifecycle.decide(importer, sha, ApprovalDecision.APPROVED)
    assert lifecycle.preview(make_principal("ana", "approver"), sha, Action.APPROVE).allowed
    assert not lifecycle.preview(
        make_principal("ana", "approver", mfa=False), sha, Action.APPROVE
    ).allowed


def test_a_preview_is_not_written_to_the_audit_log(lifecycle, upload, store):
    sha = upload(BENIGN)
    lifecycle.run_scan(sha)
    admin = make_principal("root", "admin")
    before = sum(1 for _ in lifecycle.audit(admin))
    lifecycle.preview(make_principal("ana", "approver"), sha, Action.APPROVE)
    after = sum(1 for _ in lifecycle.audit(admin))
    assert after == before + 1  # only the second audit() call's own admin decision
