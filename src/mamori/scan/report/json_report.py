"""``--format json``: the versioned document of :mod:`mamori.scan.report.schema`.

Named ``json_report`` so that the module never shadows the standard library's ``json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from mamori.findings import ScanReport
from mamori.scan.report.schema import build_document
from mamori.scan.rules import RULES, Rule

__all__ = ["render_json"]


def render_json(
    reports: Sequence[ScanReport],
    *,
    normalize_volatile: bool = False,
    rules: Mapping[str, Rule] = RULES,
) -> str:
    """Render reports as the JSON document (indented, newline-terminated).

    Args:
        reports: one report per scanned path.
        normalize_volatile: fixed start times and zero durations, for golden files.
        rules: the catalogue used for rule titles.
    """
    document = build_document(reports, normalize_volatile=normalize_volatile, rules=rules)
    # ASCII only: hostile member names and evidence (bidi overrides, C1 controls such as
    # U+009B CSI) stay escaped when someone cats the file in a terminal.
    return json.dumps(document.model_dump(mode="json"), indent=2, ensure_ascii=True) + "\n"
