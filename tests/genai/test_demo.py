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
        False,  # exfiltration
        False,  # patients may use no sink
    ]


def test_cli_demo_hospital_prints_each_role(monkeypatch):
    monkeypatch.setattr(demo, "load_embedder", lambda: (bag_of_words, DIM))
    result = CliRunner().invoke(app, ["demo", "hospital"])
    assert result.exit_code == 0, result.output
    for role in ("receptionist (rita)", "doctor (dr-house)", "patient (pat-1)"):
        assert role in result.output
    assert "denied: not found or not permitted" in result.output
    assert "hypertension" not in result.output.split("doctor (dr-house)")[0]
