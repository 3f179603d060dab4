"""Every pickle rule in the catalogue is exercised by at least one test."""

from __future__ import annotations

from pathlib import Path

from mamori.scan.rules import RULES


def test_every_pickle_rule_is_exercised_by_a_test() -> None:
    here = Path(__file__).parent
    text = "".join(p.read_text() for p in here.glob("test_*.py") if p.name != "test_rules.py")
    text += (here.parent / "formats" / "test_pickle.py").read_text()
    ours = sorted(r for r in RULES if r.startswith("MAM-PKL-"))
    assert ours
    missing = [r for r in ours if r not in text]
    assert missing == []
