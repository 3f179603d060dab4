"""Golden JSON/SARIF reports: rendered output must equal the committed files byte for byte.

After an intended renderer change run ``.venv/bin/python tests/assets/regen_golden.py`` and
review the diff of ``tests/assets/golden``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REGEN = Path(__file__).resolve().parents[2] / "assets" / "regen_golden.py"


def _expected() -> dict[Path, str]:
    spec = importlib.util.spec_from_file_location("mamori_regen_golden", REGEN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.expected_files()


EXPECTED = _expected()


@pytest.mark.parametrize("path", sorted(EXPECTED), ids=lambda p: p.name)
def test_rendered_report_matches_the_golden_file(path):
    assert path.exists(), f"missing golden file; run {REGEN.name}"
    assert path.read_text(encoding="utf-8") == EXPECTED[path], (
        f"{path.name} differs from the renderer output; run tests/assets/regen_golden.py "
        "and review the diff if the change is intended"
    )


def test_every_golden_file_is_produced_by_the_regen_script():
    on_disk = set((REGEN.parent / "golden").iterdir())
    assert on_disk == set(EXPECTED)
