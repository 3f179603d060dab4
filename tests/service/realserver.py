"""Start ``mamori serve`` as a real process on a free port (for crash and timing tests)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

_MAMORI = [sys.executable, "-c", "from mamori.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def mamori_serve(
    data: Path, extra_env: Mapping[str, str] | None = None, *, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Yield ``(base_url, process)`` once ``/readyz`` answers; terminate it afterwards."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORI_")} | {
        "MAMORI_DATA_DIR": str(data),
        "MAMORI_PORT": str(port),
        **(extra_env or {}),
    }
    data.mkdir(parents=True, exist_ok=True)
    log_path = data.parent / f"server-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*_MAMORI, "serve", "--scans", "inline"], env=env, stdout=log, stderr=log
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(log_path.read_text())
            time.sleep(0.2)
        try:
            yield url, proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
