from __future__ import annotations

import json
from dataclasses import replace

import jsonschema
import pytest
from pydantic import ValidationError

from mamori.findings import FileFormat, Finding, Location, ScanReport, Severity, SuppressedFinding
from mamori.scan.report.json_report import render_json
from mamori.scan.report.schema import (
    SCHEMA_VERSION,
    ReportDocument,
    build_document,
    report_json_schema,
)


def _doc(reports):
    return json.loads(render_json(reports))


def test_document_carries_the_schema_version(make_report):
    assert _doc([make_report()])["schema_version"] == SCHEMA_VERSION


def test_a_single_path_still_renders_the_reports_envelope(make_report):
    doc = _doc([make_report()])
    assert set(doc) == {"schema_version", "reports", "summary"}
    assert len(doc["reports"]) == 1


def test_report_has_every_documented_field(make_report):
    report = _doc([make_report(md5="c" * 32)])["reports"][0]
    assert report["path"] == "models/model.pt"
    assert report["size"] == 2048
    assert report["sha256"] == "a" * 64
    assert report["md5"] == "c" * 32
    assert report["format"] == "torch-zip"
    assert report["threshold"] == "medium"
    assert report["scanner_version"] == "0.1.0"
    assert report["ruleset_version"] == "2026.11.1"
    assert report["started_at"] == "2026-11-23T12:30:15.250000Z"
    assert report["duration_s"] == 1.5
    assert report["members"] == [
        {
            "path": ["archive/data.pkl"],
            "size": 100,
            "sha256": "b" * 64,
            "md5": None,
            "format": "pickle",
        }
    ]


def test_verdict_is_derived_from_findings_and_threshold(make_report, make_finding):
    low = make_finding(severity=Severity.LOW)
    assert _doc([make_report(findings=(low,))])["reports"][0]["verdict"] == "safe"
    high = make_finding(severity=Severity.HIGH)
    report = _doc([make_report(findings=(high,))])["reports"][0]
    assert report["verdict"] == "unsafe"
    assert report["max_severity"] == "high"


def test_finding_has_rule_title_location_evidence_and_taxonomy(make_report, make_finding):
    f = make_finding("MAM-GEN-005", member=("a.zip", "b.pkl"), offset=12, evidence="x, y")
    out = _doc([make_report(findings=(f,))])["reports"][0]["findings"][0]
    assert out == {
        "rule_id": "MAM-GEN-005",
        "title": "Ambiguous format (polyglot)",
        "severity": "high",
        "message": "something is wrong",
        "location": {"member": ["a.zip", "b.pkl"], "offset": 12},
        "evidence": "x, y",
        "cwe": ["CWE-436"],
        "atlas": ["AML.T0010.003", "AML.T0011.000"],
    }


def test_unknown_rule_id_renders_with_a_null_title(make_report):
    f = Finding("MAM-NOPE-001", Severity.LOW, "from a newer ruleset")
    out = _doc([make_report(findings=(f,))])["reports"][0]["findings"][0]
    assert out["title"] is None


def test_suppressed_findings_keep_their_reason(make_report, make_finding):
    item = SuppressedFinding(make_finding("MAM-GEN-007"), "known export quirk")
    report = _doc([make_report(suppressed=(item,))])["reports"][0]
    assert report["suppressed"][0]["reason"] == "known export quirk"
    assert report["suppressed"][0]["finding"]["rule_id"] == "MAM-GEN-007"
    assert report["findings"] == []
    assert report["verdict"] == "safe"


def test_summary_counts_paths_verdicts_and_severities(make_report, make_finding):
    unsafe = make_report(findings=(make_finding(), make_finding(severity=Severity.INFO)))
    safe = make_report(path="b.safetensors", format=FileFormat.SAFETENSORS)
    summary = _doc([unsafe, safe])["summary"]
    assert summary["paths"] == 2
    assert summary["unsafe"] == 1
    assert summary["safe"] == 1
    assert summary["verdict"] == "unsafe"
    assert summary["findings"] == 2
    assert summary["by_severity"] == {"info": 1, "low": 0, "medium": 0, "high": 1, "critical": 0}
    assert summary["max_severity"] == "high"


def test_normalize_volatile_fixes_time_and_duration(make_report):
    a = render_json([make_report()], normalize_volatile=True)
    b = render_json([replace(make_report(), duration_s=9.0)], normalize_volatile=True)
    assert a == b
    report = json.loads(a)["reports"][0]
    assert report["started_at"] == "1970-01-01T00:00:00Z"
    assert report["duration_s"] == 0.0


def test_output_is_ascii_so_hostile_names_stay_escaped(make_report, make_finding):
    f = make_finding(member=("evil\u202egnp.pkl\x9b",), evidence="\x1b[2J")
    text = render_json([make_report(findings=(f,))])
    assert text.isascii()
    assert json.loads(text)["reports"][0]["findings"][0]["evidence"] == "\x1b[2J"


def test_output_validates_against_the_published_json_schema(make_report, make_finding):
    f = make_finding(member=("m",), offset=3, evidence="e")
    item = SuppressedFinding(make_finding("MAM-GEN-007"), "why")
    doc = _doc([make_report(findings=(f,), suppressed=(item,), md5="c" * 32), make_report()])
    jsonschema.validate(doc, report_json_schema())


def test_document_round_trips_through_the_pydantic_model(make_report, make_finding):
    text = render_json([make_report(findings=(make_finding(),))])
    assert ReportDocument.model_validate_json(text) == build_document(
        [make_report(findings=(make_finding(),))]
    )


def test_schema_forbids_unknown_fields(make_report):
    doc = _doc([make_report()])
    doc["reports"][0]["surprise"] = 1
    with pytest.raises(ValidationError, match="surprise"):
        ReportDocument.model_validate(doc)


def test_empty_run_renders_an_empty_safe_summary():
    doc = _doc([])
    assert doc["reports"] == []
    assert doc["summary"]["verdict"] == "safe"
    assert doc["summary"]["max_severity"] is None


def test_location_default_is_the_file_itself(make_report):
    f = Finding("MAM-GEN-001", Severity.HIGH, "m", Location())
    out = _doc([make_report(findings=(f,))])["reports"][0]["findings"][0]
    assert out["location"] == {"member": [], "offset": None}


def test_report_built_from_a_real_scan_validates(tmp_path):
    from mamori.scan import scan_bytes

    report: ScanReport = scan_bytes(b"\x00garbage bytes", name="model.pt")
    jsonschema.validate(_doc([report]), report_json_schema())
