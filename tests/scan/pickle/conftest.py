"""A recording ScanContext for calling the pickle analyser directly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from mamori.findings import FileFormat, Finding, Location, Severity
from mamori.scan import ScanPolicy
from mamori.scan.formats.interface import LimitExceeded
from mamori.scan.rules import rule


@dataclass
class FakeContext:
    """A ScanContext that records findings, for calling analyse_* directly."""

    policy: ScanPolicy = field(default_factory=ScanPolicy)
    findings: list[Finding] = field(default_factory=list)
    deadline_calls: int = 0

    @property
    def limits(self):
        return self.policy.limits

    @property
    def member_path(self) -> tuple[str, ...]:
        return ()

    def location(self, offset: int | None = None) -> Location:
        return Location((), offset)

    def emit(self, finding: Finding) -> None:
        self.findings.append(finding)

    def report(self, rule_id, message, *, offset=None, evidence=None, severity=None) -> None:
        self.emit(
            rule(rule_id).finding(
                message, location=Location((), offset), evidence=evidence, severity=severity
            )
        )

    def refine_format(self, fmt: FileFormat) -> None:
        pass

    def scan_child(self, *args, **kwargs) -> FileFormat:
        raise AssertionError("the pickle analyser never scans children")

    def check_deadline(self) -> None:
        self.deadline_calls += 1

    def account_decompressed(self, nbytes: int) -> None:
        raise LimitExceeded("MAM-LIM-001", "not used")

    def rules(self) -> set[str]:
        return {f.rule_id for f in self.findings}

    def max_severity(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)


@pytest.fixture
def fake_ctx() -> Callable[..., FakeContext]:
    return FakeContext
