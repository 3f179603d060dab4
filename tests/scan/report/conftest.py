"""Hand-made reports for the renderer tests: no scan runs, so handler changes cannot move them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from mamori.findings import FileFormat, Finding, Location, Member, ScanReport, Severity
from mamori.scan.rules import rule

STARTED = datetime(2026, 11, 23, 12, 30, 15, 250000, tzinfo=UTC)


def base_report(**changes: Any) -> ScanReport:
    report = ScanReport(
        path="models/model.pt",
        size=2048,
        sha256="a" * 64,
        format=FileFormat.TORCH_ZIP,
        threshold=Severity.MEDIUM,
        scanner_version="0.1.0",
        ruleset_version="2026.11.1",
        started_at=STARTED,
        duration_s=1.5,
        members=(Member(("archive/data.pkl",), 100, "b" * 64, FileFormat.PICKLE),),
    )
    return replace(report, **changes)


def finding(
    rule_id: str = "MAM-GEN-001",
    *,
    member: tuple[str, ...] = (),
    offset: int | None = None,
    evidence: str | None = None,
    severity: Severity | None = None,
    message: str = "something is wrong",
) -> Finding:
    return rule(rule_id).finding(
        message,
        location=Location(member=member, offset=offset),
        evidence=evidence,
        severity=severity,
    )


@pytest.fixture
def make_report() -> Callable[..., ScanReport]:
    return base_report


@pytest.fixture
def make_finding() -> Callable[..., Finding]:
    return finding
