from __future__ import annotations

import io
import json

from rich.console import Console

from mamori.demo_up import DEMO_DIR, run_demo
from mamori.scan.policy_file import load_policy


def test_demo_builds_scans_and_writes_reports(tmp_path):
    out = io.StringIO()
    code = run_demo(tmp_path, Console(file=out, width=200), families={"pickle"})
    text = out.getvalue()
    assert code == 0
    assert "UNSAFE  " in text
    assert "SAFE  " in text
    assert "malicious samples called UNSAFE" in text
    doc = json.loads((tmp_path / DEMO_DIR / "reports" / "corpus.json").read_text())
    assert doc["summary"]["unsafe"] >= 1
    sarif = json.loads((tmp_path / DEMO_DIR / "reports" / "corpus.sarif").read_text())
    assert sarif["version"] == "2.1.0"


def test_demo_example_policy_is_valid(tmp_path):
    run_demo(tmp_path, Console(file=io.StringIO()), families={"pickle"})
    assert load_policy(tmp_path / DEMO_DIR / "policy.toml").suppressions


def test_demo_rerun_starts_from_a_clean_corpus(tmp_path):
    stray = tmp_path / DEMO_DIR / "samples" / "stray.pkl"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x")
    run_demo(tmp_path, Console(file=io.StringIO()), families={"pickle"})
    assert not stray.exists()
