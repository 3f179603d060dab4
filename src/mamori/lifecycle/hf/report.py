"""The files a pull leaves in quarantine: ``report.json`` and ``pull.json``.

``report.json`` is the standard scan report document (:mod:`mamori.scan.report.schema`), one
entry per scanned file, built from the reports the lifecycle stored with each verdict and
named by repo path instead of blob path.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mamori.findings import Verdict
from mamori.lifecycle.service import Lifecycle
from mamori.scan.report.schema import (
    SCHEMA_VERSION,
    FileReport,
    ReportDocument,
    SeverityLabel,
    Summary,
)
from mamori.store.models import ArtifactRow, ScanRow

__all__ = ["stored_report", "write_json", "write_report"]


def stored_report(lifecycle: Lifecycle, sha256: str) -> dict[str, Any] | None:
    """The JSON report stored with the artifact's scan under the current ruleset."""
    with lifecycle.store.read() as session:
        report = session.execute(
            select(ScanRow.report)
            .join(ArtifactRow, ScanRow.artifact_id == ArtifactRow.id)
            .where(
                ArtifactRow.sha256 == sha256,
                ScanRow.ruleset_version == lifecycle.ruleset_version,
            )
        ).scalar()
    return None if report is None else dict(report)


def write_report(qdir: Path, reports: list[FileReport]) -> Path:
    """Write ``report.json`` (a validated report document) into ``qdir``; return its path."""
    counts: dict[SeverityLabel, int] = {"info": 0, "low": 0, "medium": 0, "high": 0, "critical": 0}
    for r in reports:
        for f in r.findings:
            counts[f.severity] += 1
    unsafe = sum(r.verdict is Verdict.UNSAFE for r in reports)
    order = list(counts)
    tops = [r.max_severity for r in reports if r.max_severity is not None]
    document = ReportDocument(
        schema_version=SCHEMA_VERSION,
        reports=reports,
        summary=Summary(
            paths=len(reports),
            safe=len(reports) - unsafe,
            unsafe=unsafe,
            verdict=Verdict.UNSAFE if unsafe else Verdict.SAFE,
            findings=sum(len(r.findings) for r in reports),
            suppressed=sum(len(r.suppressed) for r in reports),
            by_severity=counts,
            max_severity=max(tops, key=order.index) if tops else None,
        ),
    )
    path = qdir / "report.json"
    write_json(path, document.model_dump(mode="json"))
    return path


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON through a temporary file, so a crash never leaves half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".mamori-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=True)
            out.write("\n")
        Path(tmp_name).replace(path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
