"""Pickle analyser speed: CPU MB/s of ``mamori.scan.scan_path`` against ``pickletools.genops``.

Standalone: ``.venv/bin/python bench/pickle_speed_bench.py [--runs N] [--quick]``. Builds the test
pickles under ``bench/work/pickle-speed/`` (gitignored), then for each file measures, as the
median of N runs of CPU time (``time.process_time``; the machine is shared, wall time is
noise):

- mamori: the library call ``scan_path`` (whole engine: probe, hashing thread, handler);
- genops: a bare ``for _ in pickletools.genops(f): pass`` over the same file, the loop that
  picklescan and modelscan are built on (a floor for them, not their real cost);
- picklescan and modelscan: when their console scripts exist in ``bench/.venv-peers/bin/``
  (``bench/peers.py`` installs them), their whole-process CPU time (``RUSAGE_CHILDREN``,
  median of ``--peer-runs``) on the dense protocol 4 files.

Also the peak RSS of a child process that scans each dense file, to show memory stays flat
as the file grows. Writes ``bench/results/pickle_speed.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import pickletools
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
WORK = BENCH / "work" / "pickle-speed"
RESULTS = BENCH / "results"
PEERS = {
    "picklescan": BENCH / ".venv-peers" / "bin" / "picklescan",
    "modelscan": BENCH / ".venv-peers" / "bin" / "modelscan",
}


def _dense(n: int) -> object:
    return {f"k{i}": [i, float(i), f"s{i}", (i, i + 1)] for i in range(n)}


def _torch_state_dict() -> bytes:
    """The ``data.pkl`` of a real ``torch.save`` of a state dict with many small tensors."""
    import collections  # noqa: PLC0415 - only for this sample
    import io  # noqa: PLC0415
    import zipfile  # noqa: PLC0415

    import torch  # noqa: PLC0415 - optional, heavy

    sd = collections.OrderedDict(
        (f"layer{i}.{kind}", torch.zeros(4)) for i in range(20_000) for kind in ("weight", "bias")
    )
    buf = io.BytesIO()
    torch.save(sd, buf)
    with zipfile.ZipFile(buf) as zf:
        name = next(n for n in zf.namelist() if n.endswith("/data.pkl"))
        return zf.read(name)


def _forest() -> bytes:
    import numpy as np  # noqa: PLC0415 - optional
    from sklearn.ensemble import (  # type: ignore[import-untyped]  # noqa: PLC0415 - optional, no stubs
        RandomForestClassifier,
    )

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 8))
    y = (x[:, 0] + rng.normal(size=2000) > 0).astype(int)
    model = RandomForestClassifier(n_estimators=300, random_state=0).fit(x, y)
    return pickle.dumps(model, protocol=4)


def build(quick: bool) -> dict[str, Path]:
    """Write the sample pickles (once) and return them by label."""
    WORK.mkdir(parents=True, exist_ok=True)
    n = 100_000 if quick else 800_000
    specs: dict[str, Callable[[], bytes]] = {
        f"dense-p4-{n}": lambda: pickle.dumps(_dense(n), protocol=4),
        f"dense-p2-{n}": lambda: pickle.dumps(_dense(n), protocol=2),
        "dense-p4-200000": lambda: pickle.dumps(_dense(200_000), protocol=4),
        "list-of-str-p4": lambda: pickle.dumps([f"s{i}" for i in range(2_000_000)], protocol=4),
        "torch-state-dict": _torch_state_dict,
        "sklearn-forest-p4": _forest,
    }
    out: dict[str, Path] = {}
    for label, make in specs.items():
        path = WORK / f"{label}.pkl"
        if not path.exists():
            try:
                data = make()
            except ImportError:
                continue
            path.write_bytes(data)
        out[label] = path
    return out


def _cpu(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def _genops(path: Path) -> None:
    with path.open("rb") as f:
        for _ in pickletools.genops(f):
            pass


def _child_cpu(argv: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=False, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the (big) parent across exec.
_RSS = """
import sys
from mamori.scan import scan_path
scan_path(sys.argv[1])
status = open("/proc/self/status").read()
print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
"""


def _peak_rss_mb(path: Path) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _RSS, str(path)], check=True, capture_output=True, text=True
    )
    return int(out.stdout.split()[-1]) / 1024


def main() -> None:
    """Run the benchmark and write the results."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--genops-runs", type=int, default=1)
    parser.add_argument("--peer-runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()

    from mamori.scan import scan_path  # noqa: PLC0415 - after argument parsing

    files = build(args.quick)
    rows: list[dict[str, Any]] = []
    for label, path in files.items():
        size = path.stat().st_size
        mb = size / 1e6
        report = scan_path(path)  # warm-up, and the findings for the record
        mamori = _cpu(partial(scan_path, path), args.runs)
        genops = _cpu(partial(_genops, path), args.genops_runs)
        row: dict[str, Any] = {
            "file": label,
            "bytes": size,
            "mamori_cpu_s": round(mamori, 4),
            "mamori_mb_s": round(mb / mamori, 1),
            "genops_cpu_s": round(genops, 4),
            "genops_mb_s": round(mb / genops, 1),
            "x_genops": round(genops / mamori, 2),
            "findings": sorted({f.rule_id for f in report.findings}),
        }
        if label.startswith("dense"):
            row["peak_rss_mb"] = round(_peak_rss_mb(path), 1)
        if label.startswith("dense-p4") and not args.no_peers:
            for peer, exe in PEERS.items():
                if exe.exists():
                    cpu = statistics.median(
                        _child_cpu([str(exe), "-p", str(path)]) for _ in range(args.peer_runs)
                    )
                    row[f"{peer}_cpu_s"] = round(cpu, 3)
                    row[f"x_{peer}"] = round(cpu / mamori, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)

    meta = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "runs": args.runs,
        "quick": args.quick,
    }
    suffix = "-quick" if args.quick else ""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"pickle_speed{suffix}.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        "# Pickle analyser speed (CPU time, median)",
        "",
        (
            f"Python {meta['python']}, {meta['cpus']} CPUs, load {meta['load_avg'][0]:.1f}; "
            f"{args.runs} runs of `scan_path`, {args.genops_runs} of bare `pickletools.genops`."
        ),
        "",
        (
            "| file | MB | mamori CPU s | mamori MB/s | genops MB/s | x genops "
            "| picklescan CPU s | x picklescan | modelscan CPU s | x modelscan | peak RSS MB |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| {r['file']} | {r['bytes'] / 1e6:.1f} | {r['mamori_cpu_s']} | {r['mamori_mb_s']} "
        f"| {r['genops_mb_s']} | {r['x_genops']} | {r.get('picklescan_cpu_s', '')} "
        f"| {r.get('x_picklescan', '')} | {r.get('modelscan_cpu_s', '')} "
        f"| {r.get('x_modelscan', '')} | {r.get('peak_rss_mb', '')} |"
        for r in rows
    )
    (RESULTS / f"pickle_speed{suffix}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
