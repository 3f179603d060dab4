"""Property tests: renderers accept any strings a hostile file can put in a report."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.findings import FileFormat, Location, ScanReport, Severity
from mamori.scan.report.json_report import render_json
from mamori.scan.report.sarif import render_sarif
from mamori.scan.report.text import printable, render_text
from mamori.scan.rules import rule

_names = st.text(min_size=1, max_size=40)


def _report(member, evidence, message):
    f = rule("MAM-GEN-001").finding(message, location=Location(member, 1), evidence=evidence)
    return ScanReport(
        path=member[-1],
        size=1,
        sha256="a" * 64,
        format=FileFormat.ZIP,
        threshold=Severity.MEDIUM,
        scanner_version="0.1.0",
        ruleset_version="x",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        duration_s=0.0,
        findings=(f,),
    )


@settings(max_examples=75, deadline=None)
@given(st.lists(_names, min_size=1, max_size=3).map(tuple), st.text(max_size=60), _names)
def test_text_output_never_contains_control_or_format_characters(member, evidence, message):
    text = render_text([_report(member, evidence, message)], color=False)
    for line in text.splitlines():
        assert line.isprintable(), repr(line)


@settings(max_examples=75, deadline=None)
@given(st.lists(_names, min_size=1, max_size=3).map(tuple), st.text(max_size=60), _names)
def test_json_and_sarif_round_trip_any_strings_as_ascii(member, evidence, message):
    report = _report(member, evidence, message)
    doc = json.loads(out := render_json([report]))
    assert out.isascii()
    assert doc["reports"][0]["findings"][0]["evidence"] == evidence
    assert doc["reports"][0]["findings"][0]["location"]["member"] == list(member)
    sarif = render_sarif([report])
    assert sarif.isascii()
    assert json.loads(sarif)["runs"][0]["results"][0]["properties"]["memberChain"] == list(member)


@given(st.text())
def test_printable_is_idempotent_on_its_own_output(text):
    once = printable(text)
    assert printable(once) == once


def test_location_string_is_printable_for_plain_names():
    assert printable(str(Location(("a", "b"), 3))) == "a!b@3"
