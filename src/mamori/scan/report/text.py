"""``--format text``: the human report, rendered with rich.

Every string that came out of the scanned file (member names, evidence, messages quoting
names) is hostile input. It is appended as plain :class:`rich.text.Text` (never parsed as rich
markup) and control, bidirectional and zero-width characters are escaped, so a crafted member
name cannot move the cursor, recolour the terminal or hide text (CVE-2021-42574 "Trojan
Source" style reordering).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Final, assert_never

from rich.console import Console
from rich.text import Text

from mamori.findings import Finding, ScanReport, Severity, Verdict
from mamori.scan.policy import OVERRIDE_NOTE_PREFIX
from mamori.scan.report._labels import severity_label

__all__ = ["printable", "render_text", "severity_style", "verdict_style"]

_LATIN1_MAX: Final = 0xFF
_BMP_MAX: Final = 0xFFFF


def _escape(char: str) -> str:
    code = ord(char)
    if code <= _LATIN1_MAX:
        return f"\\x{code:02x}"
    if code <= _BMP_MAX:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every non-printable character written as a Python-style escape.

    "Non-printable" is :meth:`str.isprintable`: the Unicode categories Other (controls, format
    characters such as bidi overrides and invisible tag characters, private use, unassigned)
    and Separator (except the ASCII space).
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def severity_style(severity: Severity) -> str:
    """The rich style for a severity heading."""
    match severity:
        case Severity.CRITICAL:
            return "bold white on red"
        case Severity.HIGH:
            return "bold red"
        case Severity.MEDIUM:
            return "yellow"
        case Severity.LOW:
            return "cyan"
        case Severity.INFO:
            return "dim"
        case _:
            assert_never(severity)


def verdict_style(verdict: Verdict) -> str:
    """The rich style for a verdict: SAFE green, UNSAFE red."""
    match verdict:
        case Verdict.SAFE:
            return "bold green"
        case Verdict.UNSAFE:
            return "bold red"
        case _:
            assert_never(verdict)


def _finding_lines(finding: Finding, indent: str, reason: str | None = None) -> list[Text]:
    head = Text(indent + "  ")
    head.append(finding.rule_id, style="bold")
    head.append("  ")
    head.append(printable(str(finding.location)), style="magenta")
    if reason is not None:
        head.append(f"  [{severity_label(finding.severity)}]", style="dim")
    lines = [head, Text(f"{indent}    {printable(finding.message)}")]
    if finding.evidence is not None:
        lines.append(Text(f"{indent}    evidence: {printable(finding.evidence)}", style="dim"))
    if reason is not None:
        lines.append(Text(f"{indent}    suppressed: {printable(reason)}", style="dim"))
    return lines


def _report_lines(report: ScanReport) -> list[Text]:
    verdict = report.verdict
    title = Text()
    title.append(verdict.value.upper(), style=verdict_style(verdict))
    title.append("  ")
    title.append(printable(report.path), style="bold")
    facts = [
        f"format {report.format.value}",
        f"{report.size:,} bytes",
        f"{len(report.members)} members",
        f"threshold {severity_label(report.threshold)}",
        f"{report.duration_s:.2f} s",
    ]
    lines = [title, Text("  " + " · ".join(facts), style="dim")]
    lines.append(Text(f"  sha256 {report.sha256}"))
    if report.md5 is not None:
        lines.append(Text(f"  md5    {report.md5}"))
    if not report.findings:
        lines.append(Text("  no findings", style="green"))
    for severity in sorted(Severity, reverse=True):
        group = [f for f in report.findings if f.severity is severity]
        if not group:
            continue
        heading = f"{severity_label(severity).upper()} ({len(group)})"
        line = Text("  ")
        line.append(heading, style=severity_style(severity))
        lines.append(line)
        for finding in group:
            lines.extend(_finding_lines(finding, "  "))
    if report.suppressed:
        lines.append(Text(f"  SUPPRESSED ({len(report.suppressed)})", style="dim"))
        for item in report.suppressed:
            lines.extend(_finding_lines(item.finding, "  ", reason=item.reason))
    lines.extend(
        # A denylist override weakens the scan: it must stand out, not fade into dim notes.
        Text(
            f"  note: {printable(note)}",
            style="bold yellow" if note.startswith(OVERRIDE_NOTE_PREFIX) else "dim",
        )
        for note in report.notes
    )
    return lines


def _summary(reports: Sequence[ScanReport]) -> Text:
    unsafe = sum(1 for r in reports if r.verdict is Verdict.UNSAFE)
    findings = [f for r in reports for f in r.findings]
    counts = [
        f"{n} {severity_label(s)}"
        for s in sorted(Severity, reverse=True)
        if (n := sum(1 for f in findings if f.severity is s))
    ]
    suppressed = sum(len(r.suppressed) for r in reports)
    noun = "path" if len(reports) == 1 else "paths"
    text = Text(f"{len(reports)} {noun} scanned: ")
    text.append(f"{unsafe} unsafe", style="bold red" if unsafe else "")
    text.append(", ")
    text.append(f"{len(reports) - unsafe} safe", style="green")
    text.append(f"; {len(findings)} finding{'' if len(findings) == 1 else 's'}")
    if counts:
        text.append(f" ({', '.join(counts)})")
    text.append(f"; {suppressed} suppressed")
    return text


def render_text(reports: Sequence[ScanReport], *, color: bool = False, width: int = 100) -> str:
    """Render reports for a person: a verdict line per path, findings by severity, a summary.

    Args:
        reports: one report per scanned path.
        color: emit ANSI colour codes (pass ``True`` only when writing to a terminal).
        width: the console width rich lays out for; long lines are not wrapped.
    """
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        force_terminal=color,
        color_system="standard" if color else None,
        no_color=not color,
        width=width,
        soft_wrap=True,
        highlight=False,
        markup=False,
        emoji=False,
    )
    for number, report in enumerate(reports):
        if number:
            console.print()
        for line in _report_lines(report):
            console.print(line)
    console.print()
    console.print(_summary(reports))
    return buffer.getvalue()
