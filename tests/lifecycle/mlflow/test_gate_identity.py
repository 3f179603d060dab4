"""The promotion gate compares the registry's current object and listing with what was bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from tests.lifecycle.conftest import BENIGN, make_principal

from mamori.lifecycle.mlflow.gate import decide_promotion, grant_break_glass
from mamori.lifecycle.mlflow.identity import ManifestEntry, RegistryFacts, VersionIdentity
from mamori.store.models import ApprovalDecision, AuditRow
from mamori.store.models_mlflow import MlflowVersionRow, VersionStatus

SIZE = len(BENIGN)
IDENTITY = VersionIdentity(1_700_000_000_000, "run-a", "models:/m-a", "m-a")


@pytest.fixture
def bound(lifecycle, upload) -> list[ManifestEntry]:
    """``fraud/1`` bound to one approved file, as the resolver records it."""
    sha = upload(BENIGN, name="model.pkl")
    lifecycle.run_scan(sha)
    lifecycle.decide(make_principal("paula", "approver"), sha, ApprovalDecision.APPROVED)
    blob = lifecycle.blobs.put_file(lifecycle.blobs.path_for(sha))
    lifecycle.register(
        make_principal("ivan", "importer"),
        blob,
        source="mlflow",
        name="fraud",
        version="1",
        member_path="model.pkl",
    )
    manifest = [ManifestEntry("model.pkl", SIZE, sha)]
    with lifecycle.store.write() as session:
        session.add(
            MlflowVersionRow(
                name="fraud",
                version="1",
                status=VersionStatus.RESOLVED,
                files=1,
                attempts=1,
                updated_at=datetime.now(UTC),
                identity=IDENTITY.to_json(),
                manifest=[e.to_json() for e in manifest],
                drift="",
                mirrored="",
                last_alert="",
            )
        )
    return manifest


def _facts(identity=IDENTITY, size=SIZE) -> RegistryFacts:
    return RegistryFacts.from_listing(identity, [("model.pkl", size)])


def _decide(lifecycle, current):
    return decide_promotion(
        lifecycle, name="fraud", version="1", target="production", actor="alice", current=current
    )


def test_the_bound_object_with_its_bound_listing_is_allowed(lifecycle, bound):
    assert _decide(lifecycle, _facts()).allowed


def test_a_bound_version_asked_without_current_facts_is_denied(lifecycle, bound):
    decision = _decide(lifecycle, None)
    assert not decision.allowed
    assert "not supplied" in decision.reason


def test_another_object_under_the_name_is_denied_and_stays_denied_until_rescanned(lifecycle, bound):
    other = VersionIdentity(1_700_000_000_001, "run-b", "models:/m-b", "m-b")
    first = _decide(lifecycle, _facts(identity=other))
    assert not first.allowed
    assert "renamed, or deleted and re-created" in first.reason
    # Even the original facts are refused now: only a rescan re-binds the version.
    later = _decide(lifecycle, _facts())
    assert not later.allowed
    assert later.reason.startswith("undeployable until rescanned")
    with lifecycle.store.read() as session:
        drift = session.execute(select(AuditRow).where(AuditRow.action == "mlflow-drift")).all()
    assert len(drift) == 1


def test_a_changed_size_in_the_listing_is_denied_with_the_file_named(lifecycle, bound):
    decision = _decide(lifecycle, _facts(size=SIZE + 1))
    assert not decision.allowed
    assert "model.pkl size" in decision.reason


def test_break_glass_does_not_override_a_drift(lifecycle, bound):
    grant_break_glass(
        lifecycle,
        make_principal("root", "admin"),
        name="fraud",
        version="1",
        alias="production",
        reason="incident 9",
        duration=timedelta(minutes=5),
    )
    other = VersionIdentity(1, "run-b", "models:/m-b", "m-b")
    assert not _decide(lifecycle, _facts(identity=other)).allowed


def test_break_glass_does_not_follow_the_name_onto_a_rebound_version(lifecycle, bound):
    grant_break_glass(
        lifecycle,
        make_principal("root", "admin"),
        name="fraud",
        version="1",
        alias="production",
        reason="incident 9",
        duration=timedelta(minutes=5),
    )
    # The verdict alone says no now: only the grant can allow.
    lifecycle.decide(
        make_principal("paula", "approver"), bound[0].sha256, ApprovalDecision.REJECTED
    )
    assert _decide(lifecycle, _facts()).break_glass  # same object and bytes: the grant holds
    other = VersionIdentity(1_700_000_000_009, "run-b", "models:/m-b", "m-b")
    with lifecycle.store.write() as session:  # as the resolver rebinds after a rename swap
        row = session.execute(select(MlflowVersionRow)).scalar_one()
        row.identity = other.to_json()
    decision = _decide(lifecycle, _facts(identity=other))
    assert not decision.allowed
    assert not decision.break_glass
