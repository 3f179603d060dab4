"""Peer scanners for the benchmark: a private venv and one CLI wrapper per tool.

Each peer runs exactly as a user would run it in CI (its console script, one file per call),
in a scratch working directory (fickling's ``--check-safety`` writes a JSON file into the
current directory). Every wrapper turns the tool's own exit-code contract into
``flagged`` / ``error``:

- picklescan: 0 clean, 1 infected, 2 scan error (src/picklescan/cli.py).
- modelscan: 0 clean, 1 issues, 2 scan errors, 3 nothing scanned (unsupported), 4 usage
  (modelscan/cli.py). Issues are also read from its JSON report (``-r json -o FILE``).
- fickling ``--check-safety``: 0 clean (LIKELY_SAFE), 1 unsafe, 2 parse error
  (fickling/constants.py).
- modelaudit ``scan --format json``: 0 clean, 1 issues, 2 errors; the JSON ``issues`` list
  gives the highest severity.

An uncaught Python exception also exits 1 in every one of them, which would read as
"unsafe"; a traceback on stderr is therefore always an error, never a detection. A peer that
errors on a malicious file did not flag it (a miss); on a benign file it is not a false
positive, but the error is counted and shown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venv-peers"
BIN = VENV / "bin"

# Pinned so that numbers can be reproduced; optional extras that pull in only small
# format readers are installed so each peer covers what it claims to (7z for picklescan,
# HDF5 for modelscan, the light format readers modelaudit imports when present).
# Not installed: tensorflow, torch, xgboost, mlflow (modelaudit/modelscan "all" extras).
REQUIREMENTS = (
    "picklescan[7z]==1.0.5",
    "modelscan[h5py]==0.8.8",
    "fickling==0.1.12",
    "modelaudit==0.2.54",
    "h5py",
    "onnx",
    "safetensors",
    "msgpack",
    "pyyaml",
    "dill",
    "joblib",
)

_ENV = {
    # modelaudit (promptfoo) sends telemetry unless told not to; this machine is offline anyway.
    "PROMPTFOO_DISABLE_TELEMETRY": "1",
    "NO_COLOR": "1",
    "TERM": "dumb",
}


@dataclass(frozen=True)
class RunResult:
    """One run of one tool on one file."""

    tool: str
    flagged: bool
    error: bool
    seconds: float
    peak_rss_kb: int
    returncode: int
    detail: str = ""


def ensure_venv(*, upgrade: bool = False) -> Path:
    """Create ``bench/.venv-peers`` with the pinned peers (idempotent)."""
    marker = VENV / ".installed"
    wanted = "\n".join(REQUIREMENTS)
    if marker.exists() and marker.read_text() == wanted and not upgrade:
        return VENV
    if not (BIN / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(BIN / "python"), "-m", "pip", "install", "--quiet", *REQUIREMENTS], check=True
    )
    marker.write_text(wanted)
    return VENV


# Runs one command and reports its own peak RSS. It must be a separate small process: Linux
# carries ru_maxrss across fork and exec, so a tool forked straight from the benchmark (which
# holds torch and the test data) would "inherit" the benchmark's peak. The launcher is small,
# and the tool is forked from it.
_LAUNCHER = """
import json, os, signal, subprocess, sys, time
out, timeout, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
start = time.perf_counter()
proc = subprocess.Popen(argv, start_new_session=True)
timed_out = False
while True:
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    if pid:
        break
    if time.perf_counter() - start > timeout:
        os.killpg(proc.pid, signal.SIGKILL)
        timed_out = True
        pid, status, usage = os.wait4(proc.pid, 0)
        break
    time.sleep(0.005)
with open(out, "w") as fh:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "seconds": time.perf_counter() - start,
               "maxrss_kb": usage.ru_maxrss, "timed_out": timed_out}, fh)
"""

DEFAULT_TIMEOUT = 900.0


@dataclass(frozen=True)
class Timed:
    """What the launcher measured, plus the captured output."""

    returncode: int
    seconds: float
    peak_rss_kb: int
    stdout: str
    stderr: str
    timed_out: bool


def timed(
    argv: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Timed:
    """Run ``argv`` through the launcher: exit code, wall seconds, the child's own peak RSS.

    The wall time is taken inside the launcher around the tool only. A run longer than
    ``timeout`` seconds is killed (with its process group) and marked ``timed_out``.
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(suffix=".json") as meta,
    ):
        launcher = [sys.executable, "-c", _LAUNCHER, meta.name, str(timeout), *argv]
        subprocess.run(
            launcher,
            cwd=cwd,
            env={**os.environ, **_ENV, **(env or {})},
            stdout=out,
            stderr=err,
            check=True,
        )
        info = json.loads(Path(meta.name).read_text())
        out.seek(0)
        err.seek(0)
        return Timed(
            returncode=int(info["rc"]),
            seconds=float(info["seconds"]),
            peak_rss_kb=int(info["maxrss_kb"]),
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            timed_out=bool(info["timed_out"]),
        )


def timed_run(
    argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[int, float, int, str, str]:
    """:func:`timed` as a tuple (returncode, seconds, peak RSS KiB, stdout, stderr).

    A time-out is reported as returncode -9 with "timed out" on stderr.
    """
    t = timed(argv, cwd=cwd, env=env, timeout=_timeout)
    stderr = t.stderr + (f"\ntimed out after {_timeout:g} s" if t.timed_out else "")
    return (-9 if t.timed_out else t.returncode), t.seconds, t.peak_rss_kb, t.stdout, stderr


_timeout = DEFAULT_TIMEOUT


def set_timeout(seconds: float) -> None:
    """Per-run time limit for every tool run through :func:`timed_run`."""
    global _timeout  # noqa: PLW0603 - one knob for the whole benchmark run
    _timeout = seconds


def _crashed(stderr: str) -> bool:
    return "Traceback (most recent call last)" in stderr or "timed out after" in stderr


def _tail(text: str, n: int = 160) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:n]


def picklescan(path: Path, work: Path) -> RunResult:
    """picklescan -p FILE."""
    rc, sec, rss, _out, err = timed_run([str(BIN / "picklescan"), "-p", str(path)], cwd=work)
    error = rc == 2 or _crashed(err)  # picklescan: 2 = scan error
    flagged = rc == 1 and not error
    return RunResult("picklescan", flagged, error, sec, rss, rc, _tail(err) if error else "")


def modelscan(path: Path, work: Path) -> RunResult:
    """modelscan scan -p FILE -r json -o REPORT."""
    report = work / "modelscan.json"
    report.unlink(missing_ok=True)
    argv = [str(BIN / "modelscan"), "scan", "-p", str(path), "-r", "json", "-o", str(report)]
    rc, sec, rss, _out, err = timed_run(argv, cwd=work)
    issues = 0
    errors: list[object] = []
    if report.exists():
        try:
            data = json.loads(report.read_text())
            issues = int(data.get("summary", {}).get("total_issues", 0))
            errors = list(data.get("errors", []))
        except (ValueError, TypeError):
            errors = ["unreadable JSON report"]
    skipped = rc == 3  # modelscan: nothing scanned
    error = rc in {2, 4} or _crashed(err) or bool(errors)
    flagged = rc == 1 or (issues > 0 and not _crashed(err))
    detail = "not a supported format (exit 3)" if skipped else ""
    if errors:
        detail = str(errors[0])[:160]
    return RunResult("modelscan", flagged, error and not flagged, sec, rss, rc, detail)


def fickling(path: Path, work: Path) -> RunResult:
    """fickling --check-safety FILE (JSON written to the scratch directory)."""
    argv = [
        str(BIN / "fickling"),
        "--check-safety",
        "--json-output",
        str(work / "fickling.json"),
        str(path),
    ]
    rc, sec, rss, _out, err = timed_run(argv, cwd=work)
    error = rc == 2 or _crashed(err)  # fickling EXIT_ERROR
    flagged = rc == 1 and not error
    return RunResult("fickling", flagged, error, sec, rss, rc, _tail(err) if error else "")


def modelaudit(path: Path, work: Path) -> RunResult:
    """modelaudit scan --format json --no-cache FILE."""
    argv = [str(BIN / "modelaudit"), "scan", "--format", "json", "--no-cache", str(path)]
    rc, sec, rss, out, err = timed_run(argv, cwd=work)
    worst = ""
    has_errors = False
    try:
        data = json.loads(out)
        order = ["debug", "info", "warning", "critical"]
        sevs = [str(i.get("severity", "")).lower() for i in data.get("issues", [])]
        known = [s for s in sevs if s in order]
        worst = max(known, key=order.index) if known else ""
        has_errors = bool(data.get("has_errors"))
    except (ValueError, TypeError, AttributeError):
        has_errors = True
    error = rc == 2 or _crashed(err) or (has_errors and rc != 1)
    flagged = rc == 1 and not _crashed(err)
    detail = f"max severity {worst}" if worst else ""
    if error and not flagged:
        detail = _tail(err) or "has_errors"
    return RunResult("modelaudit", flagged, error and not flagged, sec, rss, rc, detail)


PEERS: dict[str, Callable[[Path, Path], RunResult]] = {
    "picklescan": picklescan,
    "modelscan": modelscan,
    "fickling": fickling,
    "modelaudit": modelaudit,
}


def installed() -> list[str]:
    """The peers whose console script exists in the venv."""
    scripts = {"picklescan", "modelscan", "fickling", "modelaudit"}
    return [name for name in PEERS if name in scripts and (BIN / name).exists()]


if __name__ == "__main__":
    ensure_venv(upgrade="--upgrade" in sys.argv)
    print(f"peers ready in {VENV}: {', '.join(installed())}")
