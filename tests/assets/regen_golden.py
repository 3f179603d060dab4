"""Regenerate the golden JSON and SARIF reports in ``tests/assets/golden/``.

Run ``.venv/bin/python tests/assets/regen_golden.py`` after an intended change to a renderer,
then review ``git diff tests/assets/golden`` (sigstore's "regenerate, then diff" habit). The
tests in ``tests/scan/report/`` render the same cases and compare byte for byte.

The cases are hand-made :class:`ScanReport` values, so the golden files do not change when a
format handler changes; real scans are covered by the CLI and corpus tests.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from mamori.findings import (
    FileFormat,
    Finding,
    Location,
    Member,
    ScanReport,
    Severity,
    SuppressedFinding,
)
from mamori.scan import scan_bytes
from mamori.scan.report.json_report import render_json
from mamori.scan.report.sarif import render_sarif
from mamori.scan.report.schema import report_json_schema
from mamori.scan.rules import rule

GOLDEN = Path(__file__).resolve().parent / "golden"

_STARTED = datetime(2026, 11, 23, 16, 0, 0, tzinfo=UTC)
_SHA = {n: f"{n:x}" * 64 for n in range(1, 10)}  # recognisable fake digests


def _unsafe_torch_file() -> list[ScanReport]:
    """A torch zip with a finding at a file offset, one inside a member, and a suppression."""
    unreadable = rule("MAM-GEN-001").finding(
        "pickle parser failed: ValueError: truncated stream",
        location=Location(member=("archive/data.pkl",), offset=58),
    )
    nested = rule("MAM-LIM-002").finding(
        "containers nested deeper than 8",
        location=Location(member=("archive/extra.tar", "inner.gz", "payload")),
    )
    polyglot = rule("MAM-GEN-005").finding(
        "bytes are valid as several formats (torch-zip, pickle); each reading is scanned",
        location=Location(offset=0),
        evidence="torch-zip, pickle",
    )
    unknown_rule = Finding(
        rule_id="MAM-TEST-999",
        severity=Severity.LOW,
        message="a rule id this catalogue does not know (report from another version)",
        location=Location(member=("archive/version",)),
        evidence="x\u202eevil",
    )
    suppressed = rule("MAM-GEN-007").finding(
        "extension .bin but content is torch-zip", location=Location()
    )
    return [
        ScanReport(
            path="models/model.bin",
            size=4096,
            sha256=_SHA[1],
            md5="d" * 32,
            format=FileFormat.TORCH_ZIP,
            threshold=Severity.MEDIUM,
            scanner_version="0.1.0",
            ruleset_version="2026.11.1",
            started_at=_STARTED,
            duration_s=0.125,
            members=(
                Member(("archive/data.pkl",), 120, _SHA[2], FileFormat.PICKLE, md5="e" * 32),
                Member(("archive/extra.tar",), 2048, _SHA[3], FileFormat.TAR, md5="f" * 32),
                Member(("archive/extra.tar", "inner.gz"), 512, _SHA[4], FileFormat.GZIP),
                Member(("archive/version",), 2, _SHA[5], FileFormat.TEXT),
            ),
            findings=(unreadable, nested, polyglot, unknown_rule),
            suppressed=(SuppressedFinding(suppressed, "HF exports use .bin; see JIRA-123"),),
            notes=("demo note",),
        )
    ]


def _multi_path() -> list[ScanReport]:
    """A SAFE safetensors file and an UNSAFE directory whose finding sits in one of its files."""
    safe = ScanReport(
        path="models/clean.safetensors",
        size=1024,
        sha256=_SHA[6],
        format=FileFormat.SAFETENSORS,
        threshold=Severity.HIGH,
        scanner_version="0.1.0",
        ruleset_version="2026.11.1",
        started_at=_STARTED,
        duration_s=0.01,
        findings=(rule("MAM-GEN-007").finding("informational only", severity=Severity.INFO),),
    )
    directory = ScanReport(
        path="models/checkpoint dir",
        size=3000,
        sha256=_SHA[7],
        format=FileFormat.DIRECTORY,
        threshold=Severity.HIGH,
        scanner_version="0.1.0",
        ruleset_version="2026.11.1",
        started_at=_STARTED,
        duration_s=0.5,
        members=(
            Member(("config.json",), 1000, _SHA[8], FileFormat.JSON),
            Member(("weights.pt",), 2000, _SHA[9], FileFormat.TORCH_ZIP),
            Member(("weights.pt", "weights/data.pkl"), 1500, _SHA[2], FileFormat.PICKLE),
        ),
        findings=(
            rule("MAM-LIM-005").finding(
                "pickle stream holds more than 1000 opcodes",
                location=Location(member=("weights.pt", "weights/data.pkl"), offset=77),
            ),
            rule("MAM-GEN-006").finding(
                "symlink points outside the scanned directory to /etc/passwd",
                location=Location(member=("link",)),
                evidence="../../etc/passwd",
            ),
            rule("MAM-GEN-002").finding(
                "file changed while it was being scanned",
                location=Location(member=("config.json",), offset=10),
            ),
        ),
    )
    return [safe, directory]


class _Payload:
    """A harmless hostile pickle: unpickling would run ``os.system("true")``. Never loaded."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


def _real_pickle_scans() -> list[ScanReport]:
    """Real scans of ``pickle.dumps`` output: a plain dict and a reduce-to-os.system payload.

    Versions are pinned so that a version or ruleset bump alone does not churn the file; the
    findings, rule texts and messages are the real ones, so a change in the pickle analyser
    shows up here for review (regenerate and read the diff).
    """
    benign = scan_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=4), name="plain.pkl")
    hostile = scan_bytes(pickle.dumps(_Payload(), protocol=2), name="payload.pkl")
    return [
        replace(r, scanner_version="0.1.0", ruleset_version="2026.11.1") for r in (benign, hostile)
    ]


CASES: dict[str, Callable[[], list[ScanReport]]] = {
    "unsafe-torch-file": _unsafe_torch_file,
    "multi-path": _multi_path,
    "real-pickle-scan": _real_pickle_scans,
}


def expected_files() -> dict[Path, str]:
    """Every golden file and the text it must hold."""
    files: dict[Path, str] = {}
    for name, build in CASES.items():
        reports = build()
        files[GOLDEN / f"{name}.json"] = render_json(reports, normalize_volatile=True)
        files[GOLDEN / f"{name}.sarif"] = render_sarif(reports, normalize_volatile=True)
    files[GOLDEN / "report-schema.json"] = json.dumps(report_json_schema(), indent=2) + "\n"
    return files


def main() -> int:
    """Write every golden file; print the ones that changed."""
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for path, text in expected_files().items():
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old != text:
            path.write_text(text, encoding="utf-8")
            sys.stdout.write(f"updated {path.relative_to(GOLDEN.parent.parent.parent)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
