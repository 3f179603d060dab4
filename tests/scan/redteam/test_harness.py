"""The harness proves what it claims: a plain payload runs, a benign file runs nothing."""

from __future__ import annotations

import pickle
from pathlib import Path

from mamori.findings import Verdict


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (self.command,))


def test_a_plain_os_system_pickle_runs_its_payload_and_is_unsafe(attack, verdict_of, tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_System(attack.payload_command())))
    assert attack.runs("pickle", path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_a_benign_pickle_runs_nothing_and_is_safe(attack, verdict_of, tmp_path: Path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    assert not attack.runs("pickle", path)
    assert verdict_of(path) is Verdict.SAFE
