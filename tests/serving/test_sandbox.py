"""Malicious models trying to escape the loader sandbox: each payload works outside, not inside.

Every payload runs when the file is unpickled. Each test first loads the same file with plain
``pickle.load`` in a subprocess and shows the escape *succeeds* there (so the test proves the
sandbox, not a broken payload), then loads it in the sandbox and shows it is contained.
"""

from __future__ import annotations

import pickle
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mamori.serving import Layer, SandboxError, SandboxLimits, probe, start
from mamori.serving import sandbox as sandbox_module

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


class _Exec:
    """Pickles to ``exec(code)``: the payload runs inside ``pickle.load``."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def _model(tmp_path: Path, code: str) -> Path:
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    path = folder / "model.pkl"
    path.write_bytes(pickle.dumps(_Exec(code)))
    return path


def _outside(path: Path) -> subprocess.CompletedProcess[str]:
    """Load the model the way an unprotected server would."""
    code = f"import pickle\nwith open({str(path)!r}, 'rb') as f: pickle.load(f)"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def _inside(path: Path, limits: SandboxLimits | None = None) -> str:
    """Load the model in the sandbox; return what the loader reported (its error, if any)."""
    try:
        with start(path, flavour="pickle", limits=limits):
            return "loaded"
    except SandboxError as exc:
        return str(exc)


def test_every_layer_is_available_on_this_machine():
    statuses = {s.layer: s for s in probe()}
    assert set(statuses) == set(Layer)
    assert all(s.available for s in statuses.values()), statuses


def test_a_benign_model_predicts_through_the_sandbox(tmp_path):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    folder = tmp_path / "benign"
    folder.mkdir()
    path = folder / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    with start(path, flavour="pickle") as running:
        assert running.predict([[0.2], [2.8]]) == [0, 1]
        assert running.lost == []
        assert running.loader_layers[0].startswith("landlock abi")


def test_opening_a_network_socket_is_contained(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    port = server.getsockname()[1]
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5)"
    path = _model(tmp_path, code)
    with server:
        _outside(path)
        conn, _ = server.accept()  # the unprotected loader reached the listener
        conn.close()
        report = _inside(path)
        server.settimeout(1)
        with pytest.raises(TimeoutError):
            server.accept()
    assert "Operation not permitted" in report  # seccomp refused the AF_INET socket


def test_writing_outside_the_work_directory_is_contained(tmp_path):
    target = tmp_path / "model" / "escaped.txt"
    # The host path, and the model's own directory as the sandbox shows it.
    code = (
        "errors = []\n"
        f"for p in ({str(target)!r}, '/run/mamori-sandbox/model/escaped.txt'):\n"
        "    try:\n"
        "        open(p, 'w').write('pwned')\n"
        "    except OSError as exc:\n"
        "        errors.append(exc.strerror)\n"
        "raise RuntimeError('write errors: ' + ', '.join(errors))\n"
    )
    path = _model(tmp_path, code)
    _outside(path)
    assert target.read_text() == "pwned"
    target.unlink()
    report = _inside(path)
    assert not target.exists()
    # Not there at all, then read-only binds (the mount namespace and Landlock both refuse).
    assert "write errors: No such file or directory, Read-only file system" in report


def test_reading_host_secrets_is_contained(tmp_path):
    secret = tmp_path / "data" / "mamori.db"
    secret.parent.mkdir()
    secret.write_text("TOP-SECRET-STORE")
    home_file = Path.home() / ".mamori-sandbox-test-secret"
    home_file.write_text("TOP-SECRET-HOME")
    try:
        code = f"raise RuntimeError(open({str(secret)!r}).read() + open({str(home_file)!r}).read())"
        path = _model(tmp_path, code)
        assert "TOP-SECRET-STORE" in _outside(path).stderr
        report = _inside(path)
    finally:
        home_file.unlink()
    assert "TOP-SECRET" not in report
    assert "No such file or directory" in report or "Permission denied" in report


def test_a_fork_bomb_stops_at_the_process_limit(tmp_path):
    code = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(120):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(3); os._exit(0)\n"
        "        n += 1\n"
        "finally:\n"
        "    raise RuntimeError(f'forked {n}')\n"
    )
    path = _model(tmp_path, code)
    assert "forked 120" in _outside(path).stderr
    report = _inside(path, SandboxLimits(processes=16))
    assert "forked" in report
    forked = int(report.split("forked ")[1].split()[0].rstrip(";'\""))
    assert forked < 16


def test_a_memory_bomb_stops_at_the_memory_limit(tmp_path):
    code = "b = bytearray(1 << 30)\nraise RuntimeError(f'allocated {len(b)}')"
    path = _model(tmp_path, code)
    assert f"allocated {1 << 30}" in _outside(path).stderr
    report = _inside(path, SandboxLimits(memory_bytes=512 << 20))
    assert "MemoryError" in report
    assert "allocated" not in report


def test_ptrace_of_another_process_is_contained(tmp_path):
    victim = subprocess.Popen(["sleep", "60"])
    try:
        code = (
            "import ctypes\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            f"r = libc.ptrace(16, {victim.pid}, None, None)\n"  # PTRACE_ATTACH
            "e = ctypes.get_errno()\n"
            f"libc.ptrace(17, {victim.pid}, None, None)\n"  # PTRACE_DETACH
            "raise RuntimeError(f'ptrace {r} errno {e}')\n"
        )
        path = _model(tmp_path, code)
        assert "ptrace 0 errno 0" in _outside(path).stderr
        report = _inside(path)
    finally:
        victim.kill()
        victim.wait()
    assert "ptrace -1 errno 1" in report  # EPERM from the filter (the pid is not even visible)


def test_a_missing_layer_is_a_refusal_unless_a_weaker_sandbox_is_accepted(tmp_path, monkeypatch):
    path = _model(tmp_path, "x = 1")
    monkeypatch.setattr(sandbox_module, "_landlock_abi", lambda: -1)
    with pytest.raises(SandboxError, match="landlock: the kernel has no Landlock"):
        _ = start(path, flavour="pickle").__enter__()
    with start(path, flavour="pickle", allow_weaker=True) as running:
        assert running.lost == [Layer.LANDLOCK]


def test_no_bubblewrap_means_no_start_even_with_a_weaker_sandbox(tmp_path, monkeypatch):
    path = _model(tmp_path, "x = 1")
    real_which = shutil.which
    monkeypatch.setattr(
        sandbox_module.shutil, "which", lambda n: None if n == "bwrap" else real_which(n)
    )
    with pytest.raises(SandboxError, match="bubblewrap"):
        _ = start(path, flavour="pickle", allow_weaker=True).__enter__()
