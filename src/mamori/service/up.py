"""``make up``: start the API (and a scan worker) on the embedded defaults and show it working.

Runs the scanner demo first when it is installed, then starts ``mamori serve`` (and
``mamori worker`` when the job queue package is installed) as child processes, mints two
development tokens (an importer and an approver: four eyes), uploads a small benign model
through the API exactly as the printed ``curl`` example does, waits for its verdict, and stays
in the foreground until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pickle
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import httpx

from mamori.config import Settings, load_settings
from mamori.errors import MamoriError
from mamori.service.runtime import dev_issuer, jobs_available

__all__ = ["main"]

_READY_TIMEOUT: Final = 90.0
_VERDICT_TIMEOUT: Final = 90.0
_TOKEN_TTL: Final = 8 * 3600


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _mamori() -> list[str]:
    script = Path(sys.executable).with_name("mamori")
    if script.exists():
        return [str(script)]
    found = shutil.which("mamori")
    if found:
        return [found]
    return [sys.executable, "-c", "from mamori.cli import main; main()"]


def _scan_demo() -> None:
    if importlib.util.find_spec("mamori.demo_up") is None:
        return
    code = subprocess.call([sys.executable, "-m", "mamori.demo_up"])
    if code != 0:
        _say(f"(the scanner demo exited with {code}; starting the service anyway)")
    _say()


def _start(args: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A process group of its own: Ctrl-C reaches only this process, which then stops each
    # child exactly once. A second SIGINT would make uvicorn abandon its graceful shutdown.
    return subprocess.Popen([*_mamori(), *args], env=env, process_group=0)  # noqa: S603 - our CLI


def _wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            msg = f"mamori serve exited with {server.returncode}"
            raise SystemExit(msg)
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:  # noqa: PLR2004
                return
        time.sleep(0.3)
    msg = f"the API did not become ready at {url} within {_READY_TIMEOUT:.0f}s"
    raise SystemExit(msg)


def _sample(settings: Settings) -> Path:
    path = settings.data_dir.resolve() / "demo" / "tiny-model.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    # A benign pickle: a plain dict of weights. mamori never loads it, it scans its bytes.
    path.write_bytes(pickle.dumps({"weights": [0.1, 0.2, 0.3], "name": "tiny"}, protocol=4))
    return path


def _try_example(url: str, importer: str, sample: Path) -> str:
    headers = {"Authorization": f"Bearer {importer}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        made = client.post(
            "/v1/artifacts", params={"name": sample.name}, content=sample.read_bytes()
        )
        made.raise_for_status()
        sha = str(made.json()["sha256"])
        deadline = time.monotonic() + _VERDICT_TIMEOUT
        while time.monotonic() < deadline:
            view = client.get(f"/v1/artifacts/{sha}").json()
            scan = view.get("latest_scan") or {}
            if scan.get("status") in {"done", "failed"}:
                _say(f"  uploaded {sample.name}: sha256 {sha}")
                _say(f"  verdict: {scan.get('verdict')}  state: {view['state']}")
                return sha
            time.sleep(0.3)
    _say(f"  uploaded {sample.name} ({sha}); its scan is still queued")
    return sha


def _banner(url: str, importer: str, approver: str, sample: Path, sha: str) -> None:
    q = shlex.quote
    _say()
    _say(f"mamori API:  {url}    (OpenAPI docs: {url}/docs, metrics: {url}/metrics)")
    _say()
    _say("Development tokens (8 h, MFA asserted). Four eyes: the importer cannot approve.")
    _say(f"  export IMPORTER={importer}")
    _say(f"  export APPROVER={approver}")
    _say()
    _say("Upload a file and get its verdict:")
    _say(
        f'  curl -s -H "Authorization: Bearer $IMPORTER" --data-binary @{q(str(sample))} '
        f"{q(url + '/v1/artifacts?name=' + sample.name)}"
    )
    _say(f'  curl -s -H "Authorization: Bearer $IMPORTER" {url}/v1/artifacts/{sha}')
    _say("Approve it (as the other person), then ask the gate:")
    _say(f'  curl -s -X POST -H "Authorization: Bearer $APPROVER" {url}/v1/artifacts/{sha}/approve')
    _say(f'  curl -s -H "Authorization: Bearer $APPROVER" "{url}/v1/gate?digest={sha}"')
    _say()
    _say(f"Security console: {url}/console  (sign in by pasting $APPROVER or $IMPORTER)")
    _say()
    _say("Running in the foreground; Ctrl-C stops everything.")


def _stop(children: Sequence[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    for child in children:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signum)


def main() -> int:
    """Run everything until Ctrl-C (or SIGTERM); return the process exit code."""
    signal.signal(signal.SIGTERM, _terminate)
    _scan_demo()
    try:
        settings = load_settings()
        port = settings.port
        if not _port_free(settings.host, port):
            port = _free_port(settings.host)
            _say(f"port {settings.port} is busy; using {port}")
            settings = load_settings(port=port)
        # Mint before the server starts: the issuer key pair is created once, here.
        issuer = dev_issuer(settings)
        methods = {settings.mfa_claim: ["pwd", settings.mfa_value]}
        importer = issuer.mint(
            "dev-importer", roles=["importer"], ttl_seconds=_TOKEN_TTL, claims=methods
        )
        approver = issuer.mint(
            "dev-approver", roles=["approver", "deployer"], ttl_seconds=_TOKEN_TTL, claims=methods
        )
    except MamoriError as exc:
        _say(f"mamori: {exc.diagnostics()}")
        return 2
    env = {**os.environ, "MAMORI_PORT": str(port), "MAMORI_HOST": settings.host}
    children: list[subprocess.Popen[bytes]] = []
    url = f"http://{settings.host}:{port}"
    try:
        children.append(_start(["serve"], env))
        if jobs_available():
            children.append(_start(["worker"], env))
        _wait_ready(url, children[0])
        sample = _sample(settings)
        sha = _try_example(url, importer, sample)
        _banner(url, importer, approver, sample, sha)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        _say("\nstopping")
        return 0
    else:
        _say("a mamori process exited; stopping")
        return 1
    finally:
        _stop(children)


if __name__ == "__main__":
    raise SystemExit(main())
