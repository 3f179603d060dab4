"""Limits and policies are validated data: a bad value is refused, never silently ignored."""

from __future__ import annotations

import pytest

from mamori.findings import Finding, Location, Severity
from mamori.scan import ScanLimits, Suppression
from mamori.scan.rules import RULES, rule


@pytest.mark.parametrize("field", ["max_depth", "max_members", "max_seconds"])
@pytest.mark.parametrize("value", [0, -1])
def test_a_non_positive_limit_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        ScanLimits(**{field: value})


def test_a_suppression_without_a_reason_is_refused():
    with pytest.raises(ValueError, match="needs a reason"):
        Suppression(rule_id="MAM-GEN-004", path_glob="*", reason="  ")


def test_a_suppression_matches_the_path_or_the_member_chain():
    s = Suppression(rule_id="MAM-GEN-003", path_glob="*!extra/*", reason="docs")
    inside = Finding("MAM-GEN-003", Severity.INFO, "m", Location(("extra/readme",)))
    assert s.matches(inside, "model.zip")
    assert not s.matches(Finding("MAM-GEN-003", Severity.INFO, "m"), "model.zip")
    other_rule = Finding("MAM-GEN-004", Severity.INFO, "m", Location(("extra/readme",)))
    assert not s.matches(other_rule, "model.zip")


def test_every_rule_has_a_well_formed_id_and_taxonomy():
    for rule_id, entry in RULES.items():
        assert rule_id == entry.id
        assert rule_id.startswith("MAM-")
        assert entry.title
        assert entry.description
        assert all(c.startswith("CWE-") for c in entry.cwe)
        assert all(a.startswith("AML.T") for a in entry.atlas)


def test_a_rule_builds_findings_with_its_taxonomy():
    finding = rule("MAM-LIM-001").finding("too big", evidence="10 GiB")
    assert finding.cwe == ("CWE-409",)
    assert finding.atlas == ("AML.T0029",)
    assert finding.severity is Severity.HIGH


def test_a_directory_suppression_glob_matches_the_file_inside_the_scanned_directory(tmp_path):
    # `models/*.bin` must cover models/a.bin whether models/ or models/a.bin was scanned.
    finding: Finding = rule("MAM-GEN-007").finding("x", location=Location(member=("a.bin",)))
    s = Suppression(rule_id="MAM-GEN-007", path_glob="models/*.bin", reason="r")
    assert s.matches(finding, "models", directory=True)
    assert s.matches(finding, "models/", directory=True)
    assert s.matches(finding, "./models", directory=True)
    # An archive's member is not a file of a directory: no widening for file scans.
    assert not s.matches(finding, "models", directory=False)
