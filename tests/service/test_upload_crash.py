"""Issue 14 item 5: ``kill -9`` during an upload, then a restart, leaves no temp file."""

from __future__ import annotations

import contextlib
import os
import threading
import time

import httpx
import pytest

from mamori.config import load_settings
from mamori.service.runtime import dev_issuer

from .realserver import free_port, mamori_serve

pytestmark = pytest.mark.slow


def test_a_killed_servers_partial_upload_is_removed_at_the_next_start(tmp_path):
    data = tmp_path / "data"
    port = free_port()
    issuer = dev_issuer(load_settings(data_dir=data, port=port))
    token = issuer.mint("ivan", roles=["importer"], claims={"amr": ["pwd", "mfa"]})
    stop = threading.Event()

    def _slow_body():
        while not stop.is_set():
            yield b"x" * 65536
            time.sleep(0.01)

    def _upload(url: str) -> None:
        with contextlib.suppress(httpx.HTTPError):  # the server is killed under it
            httpx.post(
                f"{url}/v1/artifacts",
                params={"name": "big.bin"},
                content=_slow_body(),
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )

    blobs = data / "blobs"
    with mamori_serve(data, port=port) as (url, proc):
        uploader = threading.Thread(target=_upload, args=(url,), daemon=True)
        uploader.start()
        deadline = time.monotonic() + 30
        while not [p for p in blobs.glob(".incoming-*") if p.stat().st_size > 1 << 20]:
            assert time.monotonic() < deadline, "the upload never reached the quarantine"
            time.sleep(0.05)
        proc.kill()  # SIGKILL: no cleanup handler runs
        proc.wait(10)
        stop.set()
        uploader.join(10)
    (left,) = blobs.glob(".incoming-*")
    # The leftover of a dead process is at least a minute old by the time anyone sweeps;
    # age it instead of sleeping.
    old = time.time() - 3600
    os.utime(left, (old, old))
    with mamori_serve(data, port=free_port()):
        assert not left.exists()
