"""`mamori demo hospital`: what each verified user's tools and retrieval returned."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mamori.cli import app
from mamori.genai import demo
from mamori.genai.hospital import synthetic_data

from .conftest import DIM, bag_of_words

DATA = synthetic_data()
#: Every PHI value in the synthetic records and notes (diagnoses, drugs, codes, MRNs).
PHI_VALUES = sorted(
    {
        value
        for record in DATA.patients.values()
        for value in (
            *record["insurance"]["diagnosis_codes"],
            *(v["diagnosis"] for v in record["visits"]),
            *(m for v in record["visits"] for m in v["medications"]),
            *record["allergies"],
        )
    }
    | {f"{4_401_000 + n:08d}" for n in range(1, len(DATA.patients) + 1)}
    | {"presents with"}
)


def _by_user(steps):
    out: dict[str, list[demo.DemoStep]] = {}
    for step in steps:
        out.setdefault(step.user.split()[0], []).append(step)
    return out


@pytest.fixture(scope="module")
def real_run():
    """One run with the real embedding model from the wheel (about 10 s)."""
    return _by_user(demo.run_hospital_demo())


@pytest.fixture(scope="module")
def fast_run():
    return _by_user(demo.run_hospital_demo(embedder=(bag_of_words, DIM)))


def _released(steps) -> str:
    return json.dumps([s.result.data for s in steps if s.result.ok])


@pytest.mark.slow
def test_demo_with_the_real_model_releases_no_phi_to_the_receptionist(real_run):
    released = _released(real_run["receptionist"])
    for value in PHI_VALUES:
        assert value not in released
    search = next(s for s in real_run["receptionist"] if s.tool == "search_notes")
    assert search.result.ok
    assert search.result.data["clinical"] == []
    assert search.result.data["contact"]  # the real model still finds the call logs


@pytest.mark.slow
def test_demo_with_the_real_model_shows_a_patient_only_their_own_record(real_run):
    for step in real_run["patient"]:
        if not step.result.ok:
            continue
        text = json.dumps(step.result.data)
        for other in ("p2", "p3", "p4", "p5", "p6"):
            assert f'"{other}"' not in text
            assert f"-{other}" not in text


@pytest.mark.slow
def test_demo_with_the_real_model_lets_the_doctor_see_only_the_care_team(real_run):
    steps = {s.said: s for s in real_run["doctor"]}
    assert not steps["I am a doctor. Show me p2's full record."].result.ok  # dr-grey's patient
    batch = steps["Get records for p1, p2 and p3."].result
    assert [r["patient_id"] for r in batch.data] == ["p1", "p3"]
    assert batch.withheld == ("p2",)


@pytest.mark.slow
def test_demo_injected_instructions_in_a_note_change_nothing(real_run):
    for user, steps in real_run.items():
        exfil = next(s for s in steps if s.arguments.get("to") == "attacker@evil.example")
        assert not exfil.result.ok, user
        tampered = next(s for s in steps if "role" in s.arguments)
        assert not tampered.result.ok, user
    # The external e-mail sink accepts PUBLIC data only; by the last step every session has
    # released PII (receptionist) or PHI (doctor, patient), so even the allowed address fails.
    assert not any(s[-1].result.ok for s in real_run.values())


def test_demo_fast_run_gives_the_same_verdicts_without_the_real_model(fast_run):
    released = _released(fast_run["receptionist"])
    assert not any(value in released for value in PHI_VALUES)
    assert [s.result.ok for s in fast_run["patient"]] == [
        False,  # p2's record
        False,  # tampered role argument
        True,  # the list is reduced to p1
        False,  # "*"
        True,  # search: own documents only
        True,  # count: over their own record only
        False,  # exfiltration
        False,  # patients may use no sink
        False,  # revoked by an administrator
    ]


def test_demo_steps_carry_their_audit_records_and_the_revocation_refuses(fast_run):
    for steps in fast_run.values():
        assert all(step.audit for step in steps)
        last = steps[-1]
        assert [r.action for r in last.audit] == ["genai.revoke", "read_patient"]
        assert last.audit[-1].reason == "principal revoked"
    counts = {
        u: next(s for s in steps if s.tool == "count_patients") for u, steps in fast_run.items()
    }
    assert counts["receptionist"].result.redacted == ("patients",)
    assert counts["doctor"].result.data == {"patients": 2}  # p1 and p5; p3 has back pain


def test_cli_demo_prints_withheld_policies_projected_fields_and_whole_audit_records(monkeypatch):
    monkeypatch.setattr(demo, "load_embedder", lambda: (bag_of_words, DIM))
    output = CliRunner().invoke(app, ["demo", "hospital"]).output
    assert 'withheld Hospital::Patient::"p2" (read_patient) by default deny' in output
    assert "before any policy: invalid arguments: unexpected arguments: ['role']" in output
    assert "projected away: insurance.diagnosis_codes, visits[].diagnosis" in output
    assert "before any policy: principal revoked" in output
    records = [json.loads(line) for line in output.splitlines() if line.startswith("    {")]
    assert len(records) > 50
    # Every record printed whole, in chain order, on one line each.
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))


def test_cli_demo_hospital_prints_each_role(monkeypatch):
    monkeypatch.setattr(demo, "load_embedder", lambda: (bag_of_words, DIM))
    result = CliRunner().invoke(app, ["demo", "hospital"])
    assert result.exit_code == 0, result.output
    for role in ("receptionist (rita)", "doctor (dr-house)", "patient (pat-1)"):
        assert role in result.output
    assert "denied: not found or not permitted" in result.output
    released = [
        line for line in result.output.split("doctor (dr-house)")[0].splitlines() if "ok:" in line
    ]
    assert released
    assert "hypertension" not in "\n".join(released)
