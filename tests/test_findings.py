"""The shared result model: severities, derived verdicts, locations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mamori.findings import FileFormat, Finding, Location, ScanReport, Severity, Verdict


def _report(*severities: Severity, threshold: Severity = Severity.MEDIUM) -> ScanReport:
    return ScanReport(
        path="m",
        size=0,
        sha256="0" * 64,
        format=FileFormat.PICKLE,
        threshold=threshold,
        scanner_version="t",
        ruleset_version="t",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        duration_s=0.0,
        findings=tuple(Finding("MAM-T-1", s, "m") for s in severities),
    )


@pytest.mark.parametrize("name", ["info", "LOW", " Medium ", "high", "critical"])
def test_severity_names_parse_case_insensitively(name):
    assert Severity.parse(name).label == name.strip().lower()


def test_an_unknown_severity_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="info, low, medium, high, critical"):
        Severity.parse("severe")


def test_the_verdict_is_unsafe_only_at_or_above_the_threshold():
    assert _report(Severity.LOW).verdict is Verdict.SAFE
    assert _report(Severity.MEDIUM).verdict is Verdict.UNSAFE
    assert _report(Severity.HIGH, threshold=Severity.CRITICAL).verdict is Verdict.SAFE
    assert _report().verdict is Verdict.SAFE


def test_max_severity_is_none_without_findings():
    assert _report().max_severity is None
    assert _report(Severity.LOW, Severity.HIGH).max_severity is Severity.HIGH


def test_a_location_renders_its_member_chain_and_offset():
    assert str(Location()) == "<file>"
    assert str(Location(("a.zip", "data.pkl"), 12)) == "a.zip!data.pkl@12"


def test_findings_are_immutable():
    finding = Finding("MAM-T-1", Severity.LOW, "m")
    with pytest.raises(AttributeError):
        finding.severity = Severity.HIGH  # type: ignore[misc]
