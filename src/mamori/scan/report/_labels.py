"""Severity labels as every report format spells them; free of pydantic so text output is cheap.

:mod:`mamori.scan.report.schema` re-exports both names; the text renderer and the CLI import them
from here so that ``mamori scan`` with text output never imports pydantic (start-up time).
"""

from __future__ import annotations

from typing import Literal, assert_never

from mamori.findings import Severity

__all__ = ["SeverityLabel", "severity_label"]

SeverityLabel = Literal["info", "low", "medium", "high", "critical"]


def severity_label(severity: Severity) -> SeverityLabel:
    """The lower-case name of ``severity`` as it appears in every report format."""
    # Spelled out (not ``severity.label``) so that mypy proves the Literal matches the enum:
    # a new Severity member fails type checking here instead of producing an invalid report.
    match severity:
        case Severity.INFO:
            return "info"
        case Severity.LOW:
            return "low"
        case Severity.MEDIUM:
            return "medium"
        case Severity.HIGH:
            return "high"
        case Severity.CRITICAL:
            return "critical"
        case _:
            assert_never(severity)
