"""Scan throughput through the job queue with 1 and 2 worker processes (issue 5).

Imports N artifacts (benign pickles of a few hundred KB each, distinct bytes), then starts
``mamori worker --workers W`` and measures the time until every scan is DONE in the store.
Reports artifacts/s for W = 1 and W = 2 and the scaling ratio. Writes
bench/results/queue.json and queue.md.

    .venv/bin/python bench/queue_bench.py [--n 200] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from mamori.config import load_settings
from mamori.identity.principal import Principal
from mamori.lifecycle.queue import make_queue
from mamori.store import ScanStatus
from mamori.store.models import ScanRow

RESULTS = Path(__file__).parent / "results"
IMPORTER = Principal(subject="bench", issuer="bench", tenant="", roles=frozenset({"importer"}))


def _sample(i: int) -> bytes:
    rows = {f"k{j}": [j, float(j), f"s{i}-{j}", (j, i)] for j in range(6000)}
    return pickle.dumps(rows, protocol=4)


def _run(workers: int, n: int, work: Path) -> dict[str, float]:
    data = work / f"w{workers}"
    settings = load_settings(data_dir=data, dev_issuer=False)
    queue = make_queue(settings)
    lifecycle = queue.lifecycle()
    files = work / "samples"
    files.mkdir(exist_ok=True)
    for i in range(n):
        path = files / f"m{i}.pkl"
        if not path.exists():
            path.write_bytes(_sample(i))
        lifecycle.import_file(IMPORTER, path)  # rings the queue; no worker runs yet
    env = {**os.environ, "MAMORI_DATA_DIR": str(data), "MAMORI_DEV_ISSUER": "false"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mamori", "worker", "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        while True:
            with lifecycle.store.read() as session:
                done = session.execute(
                    select(func.count())
                    .select_from(ScanRow)
                    .where(ScanRow.status == ScanStatus.DONE)
                ).scalar_one()
            if done >= n:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    lifecycle.store.dispose()
    return {
        "workers": workers,
        "artifacts": n,
        "seconds": round(elapsed, 3),
        "per_second": round(n / elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 30 if args.quick else args.n
    with tempfile.TemporaryDirectory(prefix="mamori-queue-bench-") as tmp:
        work = Path(tmp)
        runs = [_run(1, n, work), _run(2, n, work)]
    ratio = round(runs[1]["per_second"] / runs[0]["per_second"], 2)
    result = {
        "benchmark": "queue",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average": os.getloadavg(),
        },
        "runs": runs,
        "scaling_1_to_2": ratio,
        "note": "includes worker start-up; each sample is a ~0.4 MB opcode-dense pickle",
    }
    suffix = "-quick" if args.quick else ""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"queue{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Scan throughput through the queue (SQLite store, SQLite queue)",
        "",
        (
            f"{result['when']}; {os.cpu_count()} CPUs; load average at start "
            f"{[round(x, 2) for x in result['machine']['load_average']]}."
        ),
        "",
        "| workers | artifacts | seconds | artifacts/s |",
        "|---|---|---|---|",
        *[
            f"| {r['workers']} | {r['artifacts']} | {r['seconds']} | {r['per_second']} |"
            for r in runs
        ],
        "",
        f"Scaling 1 → 2 workers: **{ratio}x** (includes worker start-up).",
        "",
    ]
    (RESULTS / f"queue{suffix}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
