"""Scan jobs on Huey: the queue rings, the store decides, nothing is lost or duplicated."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.lifecycle.conftest import BENIGN, MALICIOUS, make_principal

from mamori.audit.chain import verify_chain
from mamori.config import load_settings
from mamori.lifecycle.factory import build_lifecycle
from mamori.lifecycle.queue import make_queue
from mamori.store import ArtifactState, ScanStatus, audit_records
from mamori.store.models import ScanRow

IMPORTER = make_principal("ci", "importer")


@pytest.fixture
def settings_for(tmp_path, database_url, queue_url):
    def build(**extra):
        values = {
            "data_dir": tmp_path / "data",
            "dev_issuer": False,
            "database_url": database_url,
            "queue_url": queue_url,
            **extra,
        }
        return load_settings(**values)

    return build


def _import(lifecycle, tmp_path: Path, data: bytes, name: str) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return lifecycle.import_file(IMPORTER, path).sha256


def test_an_import_rings_the_queue_and_the_scan_records_one_verdict(tmp_path, settings_for):
    queue = make_queue(settings_for(), immediate=True)
    lifecycle = queue.lifecycle()
    sha = _import(lifecycle, tmp_path, MALICIOUS, "evil.pkl")
    view = lifecycle.get(sha)
    assert view.state is ArtifactState.UNSAFE
    assert view.latest_scan is not None
    assert view.latest_scan.status is ScanStatus.DONE


def test_reconcile_queues_what_was_never_queued(tmp_path, settings_for):
    settings = settings_for()
    lost = build_lifecycle(settings)  # no queue: the doorbell never rings
    sha = _import(lost, tmp_path, BENIGN, "tiny.pkl")
    assert lost.pending_scans() == [sha]
    queue = make_queue(settings, immediate=True)
    assert queue.reconcile() is not None
    assert lost.get(sha).state is ArtifactState.SAFE
    assert lost.pending_scans() == []


def test_a_bad_reconcile_schedule_is_a_configuration_error(settings_for):
    from mamori.errors import ConfigError

    with pytest.raises(ConfigError, match="5 fields"):
        make_queue(settings_for(reconcile_cron="every minute"))


def _dense_pickle(megabytes: int) -> bytes:
    rows = {f"k{i}": [i, float(i), f"s{i}", (i, i + 1)] for i in range(megabytes * 20_000)}
    return pickle.dumps(rows, protocol=4)


def _worker(settings, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MAMORI_DATA_DIR": str(settings.data_dir),
        "MAMORI_DEV_ISSUER": "false",
        "MAMORI_SCAN_STALE_SECONDS": str(settings.scan_stale_seconds),
    }
    if settings.database_url:
        env["MAMORI_DATABASE_URL"] = settings.database_url
    if settings.queue_url:
        env["MAMORI_QUEUE_URL"] = settings.queue_url
    with (tmp_path / "worker.log").open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "mamori", "worker", "--workers", "1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _scan_row(lifecycle, sha: str) -> ScanRow | None:
    with lifecycle.store.read() as session:
        rows = session.execute(select(ScanRow)).scalars().all()
        return rows[0] if rows else None


def _wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    pytest.fail("timed out waiting for the worker")


@pytest.mark.slow
def test_a_worker_killed_mid_scan_loses_no_job_and_duplicates_no_verdict(tmp_path, settings_for):
    settings = settings_for(scan_stale_seconds=1)
    queue = make_queue(settings)
    lifecycle = queue.lifecycle()
    worker = _worker(settings, tmp_path)
    try:
        sha = _import(lifecycle, tmp_path, _dense_pickle(40), "big.pkl")
        _wait_for(lambda: (row := _scan_row(lifecycle, sha)) and row.status is ScanStatus.RUNNING)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        row = _scan_row(lifecycle, sha)
        assert row is not None
        assert row.status is ScanStatus.RUNNING  # died mid-scan: no verdict was written
        time.sleep(1.5)  # let the dead worker's claim go stale
        worker = _worker(settings, tmp_path)
        _wait_for(lambda: (row := _scan_row(lifecycle, sha)) and row.status is ScanStatus.DONE)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    with lifecycle.store.read() as session:
        assert len(session.execute(select(ScanRow)).scalars().all()) == 1
        records = audit_records(session)
    verdicts = [r for r in records if r.action == "scan" and r.resource == sha]
    assert [r.decision for r in verdicts] == ["safe"]
    assert verify_chain(records) == len(records)


@pytest.mark.slow
def test_two_workers_given_the_same_job_twice_write_one_verdict(tmp_path, settings_for):
    settings = settings_for()
    queue = make_queue(settings)
    lifecycle = queue.lifecycle()
    sha = _import(lifecycle, tmp_path, MALICIOUS, "evil.pkl")
    queue.scan(sha)
    queue.scan(sha)
    workers = [_worker(settings, tmp_path), _worker(settings, tmp_path)]
    try:
        _wait_for(lambda: (row := _scan_row(lifecycle, sha)) and row.status is ScanStatus.DONE)
        time.sleep(1.0)  # give the duplicate messages time to be consumed
    finally:
        for w in workers:
            os.killpg(w.pid, signal.SIGKILL)
            w.wait()
    with lifecycle.store.read() as session:
        assert len(session.execute(select(ScanRow)).scalars().all()) == 1
        verdicts = [r for r in audit_records(session) if r.action == "scan" and r.resource == sha]
    assert [r.decision for r in verdicts] == ["unsafe"]
