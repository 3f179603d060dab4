"""Report renderers: text for people, JSON (versioned schema) and SARIF 2.1.0 for machines.

Renderers take finished :class:`~mamori.findings.ScanReport` values and return a string; they
never scan, never decide a verdict and never write files (the CLI does that atomically).
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, assert_never

if TYPE_CHECKING:
    from pathlib import Path

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


# The JSON and SARIF renderers build pydantic models; importing them on first use keeps
# `mamori scan` with text output (and `mamori --help`) from importing pydantic at all.
_LAZY: Final = {
    "SCHEMA_VERSION": "mamori.scan.report.schema",
    "ReportDocument": "mamori.scan.report.schema",
    "build_document": "mamori.scan.report.schema",
    "build_sarif": "mamori.scan.report.sarif",
    "render_json": "mamori.scan.report.json_report",
    "render_sarif": "mamori.scan.report.sarif",
    "render_text": "mamori.scan.report.text",
}


def __getattr__(name: str) -> Any:
    """Import a renderer's module when one of its names is first used (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
    # Imported here, not at the top: see _LAZY.
    match fmt:
        case ReportFormat.TEXT:
            from mamori.scan.report.text import render_text  # noqa: PLC0415

            return render_text(reports, color=color)
        case ReportFormat.JSON:
            from mamori.scan.report.json_report import render_json  # noqa: PLC0415

            return render_json(reports, normalize_volatile=normalize_volatile)
        case ReportFormat.SARIF:
            from mamori.scan.report.sarif import render_sarif  # noqa: PLC0415

            return render_sarif(reports, base_dir=base_dir, normalize_volatile=normalize_volatile)
        case _:
            assert_never(fmt)
