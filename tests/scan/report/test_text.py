from __future__ import annotations

import re

import pytest

from mamori.findings import FileFormat, Severity, SuppressedFinding, Verdict
from mamori.scan.report.text import printable, render_text, severity_style, verdict_style

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_safe_report_starts_with_a_safe_verdict_line(make_report):
    text = render_text([make_report()])
    assert text.splitlines()[0] == "SAFE  models/model.pt"
    assert "no findings" in text


def test_unsafe_report_starts_with_an_unsafe_verdict_line(make_report, make_finding):
    text = render_text([make_report(findings=(make_finding(),))])
    assert text.splitlines()[0] == "UNSAFE  models/model.pt"


def test_report_shows_format_size_and_digests(make_report):
    text = render_text([make_report(md5="c" * 32)])
    assert "format torch-zip" in text
    assert "2,048 bytes" in text
    assert f"sha256 {'a' * 64}" in text
    assert f"md5    {'c' * 32}" in text


def test_findings_are_grouped_by_severity_highest_first(make_report, make_finding):
    findings = (
        make_finding(severity=Severity.LOW, message="low one"),
        make_finding(severity=Severity.CRITICAL, message="critical one"),
        make_finding(severity=Severity.MEDIUM, message="medium one"),
    )
    text = render_text([make_report(findings=findings)])
    order = [text.index(h) for h in ("CRITICAL (1)", "MEDIUM (1)", "LOW (1)")]
    assert order == sorted(order)
    assert text.index("critical one") < text.index("medium one") < text.index("low one")


def test_finding_shows_rule_location_message_and_evidence(make_report, make_finding):
    f = make_finding(member=("a.zip", "b.pkl"), offset=7, evidence="os.system")
    text = render_text([make_report(findings=(f,))])
    assert "MAM-GEN-001  a.zip!b.pkl@7" in text
    assert "something is wrong" in text
    assert "evidence: os.system" in text


def test_suppressed_findings_are_listed_with_their_reason(make_report, make_finding):
    item = SuppressedFinding(make_finding("MAM-GEN-007"), "known quirk")
    text = render_text([make_report(suppressed=(item,))])
    assert "SUPPRESSED (1)" in text
    assert "suppressed: known quirk" in text


def test_summary_line_counts_paths_and_findings(make_report, make_finding):
    reports = [
        make_report(findings=(make_finding(), make_finding(severity=Severity.INFO))),
        make_report(path="b"),
    ]
    last = render_text(reports).splitlines()[-1]
    assert last == "2 paths scanned: 1 unsafe, 1 safe; 2 findings (1 high, 1 info); 0 suppressed"


def test_summary_uses_the_singular_for_one(make_report, make_finding):
    last = render_text([make_report(findings=(make_finding(),))]).splitlines()[-1]
    assert last.startswith("1 path scanned:")
    assert "; 1 finding (" in last


def test_no_colour_codes_unless_asked(make_report, make_finding):
    text = render_text([make_report(findings=(make_finding(),))])
    assert "\x1b" not in text


def test_colour_marks_unsafe_red_and_safe_green(make_report, make_finding):
    unsafe = render_text([make_report(findings=(make_finding(),))], color=True)
    safe = render_text([make_report()], color=True)
    assert "\x1b[1;31mUNSAFE" in unsafe
    assert "\x1b[1;32mSAFE" in safe
    assert ANSI.sub("", unsafe) == render_text([make_report(findings=(make_finding(),))])


@pytest.mark.parametrize(
    ("hostile", "shown"),
    [
        ("\x1b[2Jwipe", "\\x1b[2Jwipe"),  # terminal escape: clear screen
        ("a\u202egnp.pkl", "a\\u202egnp.pkl"),  # bidi override (Trojan Source)
        ("line\nbreak", "line\\x0abreak"),
        ("csi\x9b31m", "csi\\x9b31m"),  # C1 control introducer
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("tag\U000e0041", "tag\\U000e0041"),  # invisible Unicode tag character
        ("nbsp\u00a0x", "nbsp\\xa0x"),
    ],
)
def test_hostile_strings_from_the_model_are_escaped(make_report, make_finding, hostile, shown):
    f = make_finding(member=(hostile,), evidence=hostile, message=hostile)
    text = render_text([make_report(path=hostile, findings=(f,))], color=True)
    assert hostile not in text
    assert shown in text


def test_rich_markup_in_model_strings_is_printed_literally(make_report, make_finding):
    f = make_finding(evidence="[bold red]not markup[/]")
    text = render_text([make_report(findings=(f,))], color=True)
    assert "[bold red]not markup[/]" in text


def test_printable_keeps_ordinary_unicode():
    assert printable("modèle/模型.pt") == "modèle/模型.pt"


def test_every_severity_and_verdict_has_a_style():
    assert all(severity_style(s) for s in Severity)
    assert all(verdict_style(v) for v in Verdict)


def test_notes_are_shown(make_report):
    assert "note: partial" in render_text([make_report(notes=("partial",))])


def test_every_file_format_is_shown(make_report):
    for fmt in FileFormat:
        assert f"format {fmt.value}" in render_text([make_report(format=fmt)])
