"""Report renderers: text for people, JSON (versioned schema) and SARIF 2.1.0 for machines.

Renderers take finished :class:`~mamori.findings.ScanReport` values and return a string; they
never scan, never decide a verdict and never write files (the CLI does that atomically).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path
from typing import assert_never

from mamori.findings import ScanReport
from mamori.scan.report.json_report import render_json
from mamori.scan.report.sarif import build_sarif, render_sarif
from mamori.scan.report.schema import SCHEMA_VERSION, ReportDocument, build_document
from mamori.scan.report.text import render_text

__all__ = [
    "SCHEMA_VERSION",
    "ReportDocument",
    "ReportFormat",
    "build_document",
    "build_sarif",
    "render",
    "render_json",
    "render_sarif",
    "render_text",
]


class ReportFormat(enum.StrEnum):
    """The output formats of ``mamori scan --format``."""

    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"


def render(
    reports: Sequence[ScanReport],
    fmt: ReportFormat,
    *,
    color: bool = False,
    base_dir: Path | None = None,
    normalize_volatile: bool = False,
) -> str:
    """Render ``reports`` in ``fmt``.

    Args:
        reports: one report per scanned path.
        fmt: the output format.
        color: ANSI colours in text output (only when writing to a terminal).
        base_dir: SARIF only: absolute paths below it become repository-relative URIs.
        normalize_volatile: JSON and SARIF: fixed times and durations, for golden files.
    """
    match fmt:
        case ReportFormat.TEXT:
            return render_text(reports, color=color)
        case ReportFormat.JSON:
            return render_json(reports, normalize_volatile=normalize_volatile)
        case ReportFormat.SARIF:
            return render_sarif(reports, base_dir=base_dir, normalize_volatile=normalize_volatile)
        case _:
            assert_never(fmt)
