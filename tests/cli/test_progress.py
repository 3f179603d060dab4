"""`mamori scan` shows bytes done on stderr at a terminal, and nothing when stderr is a pipe."""

from __future__ import annotations

import os
import pickle
import select
import subprocess
import sys
from pathlib import Path

import pytest

from mamori.cli.exitcodes import EXIT_SAFE

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big_pickle(tmp_path_factory):
    # About 30 MB of opcodes: long enough for several progress refreshes, benign.
    path = tmp_path_factory.mktemp("big") / "big.pkl"
    path.write_bytes(pickle.dumps(list(range(6_000_000)), protocol=4))
    return path


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORI_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env["TERM"] = "xterm-256color"
    env.pop("NO_COLOR", None)
    env["COLUMNS"] = "120"
    return env


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            return b"".join(chunks)
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the pty's other side closed
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_a_long_single_file_scan_shows_bytes_on_a_terminal(big_pickle):
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "mamori", "scan", str(big_pickle)],
            stdout=subprocess.DEVNULL,
            stderr=terminal,
            env=_env(),
        )
        os.close(terminal)
        output = b""
        while process.poll() is None:
            output += _read_all(controller)
        output += _read_all(controller)
    finally:
        os.close(controller)
    assert process.returncode == EXIT_SAFE
    text = output.decode(errors="replace")
    assert "big.pkl" in text
    assert "MB" in text  # rich's DownloadColumn: "12.3/30.0 MB"


def test_no_progress_is_written_when_stderr_is_not_a_terminal(big_pickle):
    result = subprocess.run(
        [sys.executable, "-m", "mamori", "scan", str(big_pickle)],
        capture_output=True,
        env=_env(),
        timeout=300,
        check=False,
    )
    assert result.returncode == EXIT_SAFE, result.stderr
    assert result.stderr == b""
