"""Every member of every closed set the reports show renders in every output format.

The renderers use ``match`` + ``assert_never``, so mypy catches a new enum member in the code;
this test catches it at run time (pip-audit's ``test_to_format_is_exhaustive``).
"""

from __future__ import annotations

import json

import pytest

from mamori.findings import FileFormat, Member, Severity
from mamori.scan.report import ReportFormat, render
from mamori.scan.report.schema import severity_label


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_every_severity_renders_in_every_format(fmt, make_report, make_finding):
    findings = tuple(make_finding(severity=s, message=f"sev {s.name}") for s in Severity)
    for threshold in Severity:
        out = render([make_report(findings=findings, threshold=threshold)], fmt)
        assert "sev CRITICAL" in out
        assert "sev INFO" in out


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_every_verdict_renders_in_every_format(fmt, make_report, make_finding):
    safe = render([make_report()], fmt)
    unsafe = render([make_report(findings=(make_finding(),))], fmt)
    assert "safe" in safe.lower()
    assert "unsafe" in unsafe.lower()
    assert safe != unsafe


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_every_file_format_renders_in_every_format(fmt, make_report):
    for file_format in FileFormat:
        member = Member(("m",), 1, "1" * 64, file_format)
        out = render([make_report(format=file_format, members=(member,))], fmt)
        assert file_format.value in out


def test_every_report_format_is_rendered(make_report):
    outputs = {fmt: render([make_report()], fmt) for fmt in ReportFormat}
    json.loads(outputs[ReportFormat.JSON])
    json.loads(outputs[ReportFormat.SARIF])
    assert outputs[ReportFormat.TEXT].startswith("SAFE")


def test_severity_labels_are_the_lower_case_enum_names():
    assert [severity_label(s) for s in Severity] == [s.name.lower() for s in Severity]
