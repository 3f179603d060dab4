"""The versioned JSON report schema: pydantic models at the output boundary.

Inside mamori a report is a frozen :class:`~mamori.findings.ScanReport`. When it leaves the
process as JSON it goes through these models, which fix field names and types, forbid extra
fields, and carry :data:`SCHEMA_VERSION`. Consumers can validate against
:func:`report_json_schema`.

Versioning: the minor number grows when a field is *added* (old consumers keep working); the
major number grows when a field is removed, renamed or changes meaning.

Document shape (every run, one path or many)::

    {
      "schema_version": "1.0",
      "reports": [ { "path": ..., "verdict": "unsafe", "findings": [...], ... } ],
      "summary": { "paths": 1, "unsafe": 1, "safe": 0, "verdict": "unsafe", ... }
    }
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from mamori.findings import (
    FileFormat,
    Finding,
    Member,
    ScanReport,
    Severity,
    SuppressedFinding,
    Verdict,
)
from mamori.scan.report._labels import SeverityLabel, severity_label
from mamori.scan.rules import RULES, Rule

__all__ = [
    "NORMALIZED_STARTED_AT",
    "SCHEMA_VERSION",
    "FileReport",
    "FindingModel",
    "LocationModel",
    "MemberModel",
    "ReportDocument",
    "SeverityLabel",
    "Summary",
    "SuppressedFindingModel",
    "build_document",
    "report_json_schema",
    "severity_label",
]

SCHEMA_VERSION: Final = "1.0"

NORMALIZED_STARTED_AT: Final = datetime(1970, 1, 1, tzinfo=UTC)
"""What ``normalize_volatile`` puts in place of the start time, so golden files are stable."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocationModel(_Model):
    """Where a finding sits: member chain from the scanned path, and a byte offset in it."""

    member: list[str] = Field(
        description="Container members from the scanned path inward; empty for the file itself."
    )
    offset: int | None = Field(description="Byte offset inside the innermost member, if known.")


class FindingModel(_Model):
    """One finding, with its rule's catalogue title and taxonomy ids."""

    rule_id: str = Field(description="Stable rule id, e.g. MAM-PKL-001.")
    title: str | None = Field(description="Rule title from the catalogue; null for unknown ids.")
    severity: SeverityLabel
    message: str
    location: LocationModel
    evidence: str | None
    cwe: list[str] = Field(description="CWE ids, e.g. CWE-502.")
    atlas: list[str] = Field(description="MITRE ATLAS technique ids, e.g. AML.T0010.003.")


class SuppressedFindingModel(_Model):
    """A finding a policy suppression took out of the verdict, and the policy's reason."""

    finding: FindingModel
    reason: str


class MemberModel(_Model):
    """A file inside the scanned artifact (archive member or directory entry)."""

    path: list[str]
    size: int
    sha256: str
    md5: str | None
    format: FileFormat


class FileReport(_Model):
    """Everything the scan of one path found."""

    path: str
    size: int
    sha256: str = Field(
        description="SHA-256 of the file; for a directory, of its sorted file manifest."
    )
    md5: str | None = Field(description="MD5, only when requested (--md5).")
    format: FileFormat
    verdict: Verdict = Field(description="unsafe when a finding is at or above the threshold.")
    threshold: SeverityLabel
    max_severity: SeverityLabel | None
    scanner_version: str
    ruleset_version: str
    started_at: datetime
    duration_s: float
    members: list[MemberModel]
    findings: list[FindingModel]
    suppressed: list[SuppressedFindingModel]
    notes: list[str]


class Summary(_Model):
    """Totals over every path of the run."""

    paths: int
    safe: int
    unsafe: int
    verdict: Verdict = Field(description="unsafe when any path is unsafe.")
    findings: int = Field(description="Unsuppressed findings over all paths.")
    suppressed: int
    by_severity: dict[SeverityLabel, int] = Field(
        description="Unsuppressed findings per severity; every severity is present."
    )
    max_severity: SeverityLabel | None


class ReportDocument(_Model):
    """The top-level JSON document mamori writes for ``--format json``."""

    schema_version: Literal["1.0"]
    reports: list[FileReport]
    summary: Summary


def _finding(finding: Finding, rules: Mapping[str, Rule]) -> FindingModel:
    entry = rules.get(finding.rule_id)
    return FindingModel(
        rule_id=finding.rule_id,
        title=entry.title if entry is not None else None,
        severity=severity_label(finding.severity),
        message=finding.message,
        location=LocationModel(
            member=list(finding.location.member), offset=finding.location.offset
        ),
        evidence=finding.evidence,
        cwe=list(finding.cwe),
        atlas=list(finding.atlas),
    )


def _suppressed(item: SuppressedFinding, rules: Mapping[str, Rule]) -> SuppressedFindingModel:
    return SuppressedFindingModel(finding=_finding(item.finding, rules), reason=item.reason)


def _member(member: Member) -> MemberModel:
    return MemberModel(
        path=list(member.path),
        size=member.size,
        sha256=member.sha256,
        md5=member.md5,
        format=member.format,
    )


def _file_report(
    report: ScanReport, rules: Mapping[str, Rule], *, normalize_volatile: bool
) -> FileReport:
    top = report.max_severity
    return FileReport(
        path=report.path,
        size=report.size,
        sha256=report.sha256,
        md5=report.md5,
        format=report.format,
        verdict=report.verdict,
        threshold=severity_label(report.threshold),
        max_severity=None if top is None else severity_label(top),
        scanner_version=report.scanner_version,
        ruleset_version=report.ruleset_version,
        started_at=NORMALIZED_STARTED_AT if normalize_volatile else report.started_at,
        duration_s=0.0 if normalize_volatile else round(report.duration_s, 6),
        members=[_member(m) for m in report.members],
        findings=[_finding(f, rules) for f in report.findings],
        suppressed=[_suppressed(s, rules) for s in report.suppressed],
        notes=list(report.notes),
    )


def _summary(reports: Sequence[ScanReport]) -> Summary:
    unsafe = sum(1 for r in reports if r.verdict is Verdict.UNSAFE)
    counts: dict[SeverityLabel, int] = {severity_label(s): 0 for s in Severity}
    for report in reports:
        for finding in report.findings:
            counts[severity_label(finding.severity)] += 1
    top = max((s for r in reports if (s := r.max_severity) is not None), default=None)
    return Summary(
        paths=len(reports),
        safe=len(reports) - unsafe,
        unsafe=unsafe,
        verdict=Verdict.UNSAFE if unsafe else Verdict.SAFE,
        findings=sum(len(r.findings) for r in reports),
        suppressed=sum(len(r.suppressed) for r in reports),
        by_severity=counts,
        max_severity=None if top is None else severity_label(top),
    )


def build_document(
    reports: Sequence[ScanReport],
    *,
    normalize_volatile: bool = False,
    rules: Mapping[str, Rule] = RULES,
) -> ReportDocument:
    """Convert scan reports to the validated JSON document model.

    Args:
        reports: one report per scanned path, in the order they were scanned.
        normalize_volatile: replace start times and durations with fixed values, for golden
            files and reproducible diffs.
        rules: the catalogue used to look up rule titles.
    """
    return ReportDocument(
        schema_version=SCHEMA_VERSION,
        reports=[_file_report(r, rules, normalize_volatile=normalize_volatile) for r in reports],
        summary=_summary(reports),
    )


def report_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of :class:`ReportDocument`, for consumers to validate."""
    return ReportDocument.model_json_schema(mode="serialization")
