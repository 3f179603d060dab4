"""Scanner benchmark: detection on the sample corpus, throughput, and peak memory.

One run measures, against picklescan, modelscan, fickling and modelaudit (see peers.py):

1. recall and false positives on ``mamori.testing.build_corpus`` (a table per sample);
2. throughput (MB/s, median of ``--repeat`` runs, page cache warmed first for everyone) on an
   opcode-dense ~40 MB pickle and a ~200 MB torch zip, with ``sha256sum`` of the same file as
   the physical-limit reference; mamori both as a library call and as the ``mamori`` CLI;
3. mamori's peak RSS (the child's ``ru_maxrss``) scanning a ~2 GB torch zip, generated under
   bench/work/ and deleted afterwards.

Targets are printed PASS/FAIL; the results go to bench/results/scanner.json and scanner.md.
``--quick`` shrinks every size and the corpus so the harness can be checked in a minute or
two; its numbers are not the published ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import peers

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / "work"
RESULTS = BENCH / "results"
MAMORI = ROOT / ".venv" / "bin" / "mamori"
MB = 1_000_000

TARGET_DENSE_VS_PEER = 20.0
TARGET_ZIP_VS_SHA = 0.8
TARGET_RSS_MB = 256
SLOW_RUN_S = 60.0


@dataclass
class Sizes:
    dense_pickle: int
    torch_zip: int
    big_zip: int
    repeat: int


FULL = Sizes(dense_pickle=40 * MB, torch_zip=200 * MB, big_zip=2_000 * MB, repeat=3)
QUICK = Sizes(dense_pickle=1 * MB, torch_zip=20 * MB, big_zip=200 * MB, repeat=1)


# --- helpers ------------------------------------------------------------------------------


def mamori_cli(path: Path) -> peers.RunResult:
    """``mamori scan --format json FILE`` as a user runs it: exit 1 = UNSAFE, 2 = error."""
    rc, sec, rss, _out, err = peers.timed_run([str(MAMORI), "scan", "--format", "json", str(path)])
    error = rc not in {0, 1} or "Traceback (most recent call last)" in err
    detail = ""
    if error:
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        detail = lines[-1][:160] if lines else f"exit {rc}"
    flagged = rc == 1 and not error
    return peers.RunResult(
        "mamori",
        flagged=flagged,
        error=error,
        seconds=sec,
        peak_rss_kb=rss,
        returncode=rc,
        detail=detail,
    )


def warm(path: Path) -> None:
    """Read the file once so every tool starts from the same (cached) state."""
    with path.open("rb") as fh:
        while fh.read(1 << 24):
            pass


def sha256sum(path: Path) -> peers.RunResult:
    """coreutils sha256sum, or hashlib when it is missing (noted in the result)."""
    exe = shutil.which("sha256sum")
    if exe:
        rc, sec, rss, _, _ = peers.timed_run([exe, str(path)])
        return peers.RunResult(
            "sha256sum", flagged=False, error=rc != 0, seconds=sec, peak_rss_kb=rss, returncode=rc
        )
    start = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    seconds = time.perf_counter() - start
    return peers.RunResult(
        "sha256sum",
        flagged=False,
        error=False,
        seconds=seconds,
        peak_rss_kb=0,
        returncode=0,
        detail="hashlib",
    )


def mamori_library(path: Path) -> peers.RunResult:
    """``mamori.scan.scan_path`` in this process: the engine's speed without start-up."""
    from mamori.findings import Verdict  # noqa: PLC0415 - keep bench start-up light
    from mamori.scan import scan_path  # noqa: PLC0415

    start = time.perf_counter()
    report = scan_path(path)
    seconds = time.perf_counter() - start
    flagged = report.verdict is Verdict.UNSAFE
    return peers.RunResult(
        "mamori-lib", flagged=flagged, error=False, seconds=seconds, peak_rss_kb=0, returncode=0
    )


# --- inputs -------------------------------------------------------------------------------


def make_dense_pickle(path: Path, size: int) -> None:
    """Opcode-dense pickle: many small dicts entries of ints, floats, strings and tuples."""
    if path.exists() and abs(path.stat().st_size - size) < size * 0.1:
        return

    def dump(n: int) -> bytes:
        return pickle.dumps(
            {f"k{i}": [i, float(i), f"s{i}", (i, i + 1)] for i in range(n)}, protocol=4
        )

    probe = len(dump(10_000)) / 10_000
    path.write_bytes(dump(int(size / probe)))


def make_torch_zip(path: Path, size: int) -> None:
    """torch.save of a state dict of large float32 tensors (~``size`` bytes, stored zip)."""
    if path.exists() and abs(path.stat().st_size - size) < size * 0.1:
        return
    import torch  # noqa: PLC0415 - only the benchmark needs torch

    per_tensor = min(size, 64 * MB)
    count = max(1, size // per_tensor)
    numel = per_tensor // 4
    base = torch.arange(numel, dtype=torch.float32)
    state = {f"layers.{i}.weight": base + i for i in range(count)}
    with path.open("wb") as fh:
        torch.save(state, fh)


def make_big_torch_zip(path: Path, size: int) -> None:
    """A ~``size`` torch zip written tensor by tensor so the generator itself stays small.

    torch.save needs every tensor in memory; file-backed tensors (torch.from_file) keep that
    in the page cache instead of anonymous memory.
    """
    import torch  # noqa: PLC0415

    per_tensor = min(128 * MB, max(MB, size // 4))
    count = max(1, size // per_tensor)
    backing = path.with_suffix(".backing")
    with backing.open("wb") as fh:
        fh.truncate(per_tensor)  # sparse: reading it costs no disk
    try:
        numel = per_tensor // 4
        state = {
            f"layers.{i}.weight": torch.from_file(
                str(backing), shared=False, size=numel, dtype=torch.float32
            )
            for i in range(count)
        }
        with path.open("wb") as fh:
            torch.save(state, fh)
        del state
    finally:
        backing.unlink()


# --- measurements -------------------------------------------------------------------------


@dataclass
class SampleRow:
    name: str
    family: str
    malicious: bool
    technique: str
    results: dict[str, dict[str, object]] = field(default_factory=dict)


def run_corpus(tools: list[str], *, quick: bool) -> list[SampleRow]:
    """Every tool on every corpus sample; one row per sample."""
    from mamori.testing import build_corpus  # noqa: PLC0415

    dest = WORK / "corpus"
    shutil.rmtree(dest, ignore_errors=True)
    samples = build_corpus(dest)
    if quick:
        samples = _quick_subset(samples)
    scratch = WORK / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    rows: list[SampleRow] = []
    for n, sample in enumerate(samples, 1):
        path = dest / sample.relpath
        row = SampleRow(sample.name, sample.family, sample.malicious, sample.technique)
        row.results["mamori"] = asdict(mamori_cli(path))
        for tool in tools:
            row.results[tool] = asdict(peers.PEERS[tool](path, scratch))
        marks = " ".join(
            f"{t}={'X' if r['flagged'] else ('E' if r['error'] else '.')}"
            for t, r in row.results.items()
        )
        kind = "MAL" if sample.malicious else "ok "
        print(f"[{n:3d}/{len(samples)}] {kind} {sample.name:45s} {marks}", flush=True)
        rows.append(row)
    return rows


def _quick_subset(samples: list[Any]) -> list[Any]:
    picked: list[Any] = []
    seen: dict[tuple[str, bool], int] = {}
    for s in samples:
        key = (s.family, s.malicious)
        if seen.get(key, 0) < (2 if s.malicious else 1):
            picked.append(s)
            seen[key] = seen.get(key, 0) + 1
    return picked


def corpus_totals(rows: list[SampleRow]) -> dict[str, dict[str, int | float]]:
    """Recall, false positives and errors per tool."""
    tools = list(rows[0].results) if rows else []
    out: dict[str, dict[str, int | float]] = {}
    mal = [r for r in rows if r.malicious]
    ben = [r for r in rows if not r.malicious]
    for tool in tools:
        hits = sum(bool(r.results[tool]["flagged"]) for r in mal)
        fps = sum(bool(r.results[tool]["flagged"]) for r in ben)
        out[tool] = {
            "malicious": len(mal),
            "detected": hits,
            "recall": hits / len(mal) if mal else 1.0,
            "benign": len(ben),
            "false_positives": fps,
            "errors_on_malicious": sum(bool(r.results[tool]["error"]) for r in mal),
            "errors_on_benign": sum(bool(r.results[tool]["error"]) for r in ben),
            "seconds_total": round(sum(float(r.results[tool]["seconds"]) for r in rows), 2),
        }
    return out


_CLI_TOOLS = frozenset({"sha256sum", "mamori", *peers.PEERS})


def _startup(run: Any, repeat: int) -> float:
    """Median wall time of a tool on a one-opcode pickle: its start-up cost."""
    tiny = WORK / "tiny.pkl"
    tiny.write_bytes(pickle.dumps(1, protocol=2))
    return statistics.median(run(tiny).seconds for _ in range(max(1, repeat)))


def throughput(path: Path, tools: list[str], repeat: int) -> dict[str, dict[str, object]]:
    """Median MB/s of each tool on ``path`` (cache warmed before every tool).

    Command-line tools also get ``net_mb_per_s``: the size over (median - start-up), where
    start-up is the tool's median time on a one-opcode pickle. The targets compare mamori's
    library call against the peers' net speed, so no one is charged for interpreter start-up.
    """
    size = path.stat().st_size
    scratch = WORK / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    runners = {
        "sha256sum": sha256sum,
        "mamori-lib": mamori_library,
        "mamori": mamori_cli,
        **{t: (lambda p, t=t: peers.PEERS[t](p, scratch)) for t in tools},
    }
    out: dict[str, dict[str, object]] = {}
    for name, run in runners.items():
        warm(path)
        runs = [run(path)]
        # A tool that takes minutes per run is measured once: the median of slow runs would
        # only add waiting, not precision, at these ratios.
        while len(runs) < repeat and runs[0].seconds < SLOW_RUN_S and not runs[0].error:
            runs.append(run(path))
        secs = statistics.median(r.seconds for r in runs)
        ok = not any(r.error for r in runs)
        startup = _startup(run, repeat) if name in _CLI_TOOLS else 0.0
        net = secs - startup
        out[name] = {
            "seconds_median": round(secs, 3),
            "mb_per_s": round(size / MB / secs, 2) if secs > 0 else None,
            "startup_s": round(startup, 3),
            "net_mb_per_s": round(size / MB / net, 2) if net > 0 else None,
            "ok": ok,
            "flagged": runs[-1].flagged,
            # In-process runs have no RSS of their own to report.
            "peak_rss_mb": (
                round(max(r.peak_rss_kb for r in runs) / 1024, 1) if name in _CLI_TOOLS else None
            ),
            "detail": runs[-1].detail,
            "runs": [round(r.seconds, 3) for r in runs],
        }
        speed, net_speed = out[name]["mb_per_s"], out[name]["net_mb_per_s"]
        note = runs[-1].detail
        print(
            f"  {name:12s} {speed!s:>9} MB/s (net of start-up {net_speed!s:>9})  "
            f"median {secs:.2f}s  start-up {startup:.2f}s  ok={ok} {note}",
            flush=True,
        )
    return out


def peak_rss(path: Path) -> dict[str, object]:
    """Peak RSS of ``mamori scan`` on ``path`` (the child's own ru_maxrss)."""
    warm(path)
    result = mamori_cli(path)
    return {
        "file_mb": round(path.stat().st_size / MB, 1),
        "peak_rss_mb": round(result.peak_rss_kb / 1024, 1),
        "seconds": round(result.seconds, 2),
        "ok": not result.error,
        "detail": result.detail,
    }


# --- report -------------------------------------------------------------------------------


def _ratio(a: object, b: object) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return round(a / b, 2)
    return None


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The four targets, PASS/FAIL, with the measured value."""
    tot = results["corpus"]["totals"].get("mamori", {})
    recall_ok = tot.get("detected") == tot.get("malicious")
    corpus = {
        "target": "corpus: 100 % recall, 0 false positives",
        "value": f"recall {tot.get('detected')}/{tot.get('malicious')}, "
        f"FP {tot.get('false_positives')}/{tot.get('benign')}",
        "pass": (recall_ok and tot.get("false_positives") == 0) if tot else None,
    }
    if not tot:
        corpus["value"] = "skipped"
    if not results["throughput"]:
        skipped = {"value": "skipped", "pass": None}
        dense_target = {"target": f"dense pickle >= {TARGET_DENSE_VS_PEER:g}x fastest peer"}
        zip_target = {"target": f"torch zip >= {TARGET_ZIP_VS_SHA:g}x sha256sum"}
        return [corpus, dense_target | skipped, zip_target | skipped, _rss_target(results)]
    dense = results["throughput"]["dense_pickle"]
    speeds = [v["net_mb_per_s"] for k, v in dense.items() if k in peers.PEERS and v["ok"]]
    fastest = max((x for x in speeds if x), default=None)
    ratio = _ratio(dense["mamori-lib"]["mb_per_s"], fastest)
    dense_target = {
        "target": f"dense pickle >= {TARGET_DENSE_VS_PEER:g}x fastest peer",
        "value": f"{ratio}x" if ratio is not None else "no peer finished",
        "pass": ratio is not None and ratio >= TARGET_DENSE_VS_PEER,
    }
    tz = results["throughput"]["torch_zip"]
    zratio = _ratio(tz["mamori-lib"]["mb_per_s"], tz["sha256sum"]["mb_per_s"])
    zip_target = {
        "target": f"torch zip >= {TARGET_ZIP_VS_SHA:g}x sha256sum",
        "value": f"{zratio}x",
        "pass": zratio is not None and zratio >= TARGET_ZIP_VS_SHA,
    }
    return [corpus, dense_target, zip_target, _rss_target(results)]


def _rss_target(results: dict[str, Any]) -> dict[str, Any]:
    rss = results["peak_rss"]
    if rss.get("detail") == "skipped":
        return {"target": f"peak RSS <= {TARGET_RSS_MB} MB", "value": "skipped", "pass": None}
    return {
        "target": f"peak RSS <= {TARGET_RSS_MB} MB on a {rss['file_mb']} MB file",
        "value": f"{rss['peak_rss_mb']} MB",
        "pass": bool(rss["ok"]) and float(rss["peak_rss_mb"]) <= TARGET_RSS_MB,
    }


def _verdict(passed: bool | None) -> str:
    return "SKIP" if passed is None else ("PASS" if passed else "FAIL")


def _mark(result: dict[str, Any]) -> str:
    if result["flagged"]:
        return "X"
    return "E" if result["error"] else "."


def markdown(results: dict[str, Any]) -> str:
    """The README tables: targets, corpus totals, throughput, per-sample detections."""
    kind = "full run"
    if results.get("partial"):
        kind = "partial run: " + ", ".join(results["partial"]) + " skipped"
    if results["quick"]:
        kind = "QUICK run, not for publication"
    meta = results["machine"]
    lines = [
        f"# Scanner benchmark ({kind})",
        "",
        f"{results['started']}; {meta['cpus']} CPUs, {meta['platform']}, Python "
        f"{meta['python']}; load average at start {meta['loadavg']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in results["versions"].items())
        + ".",
        "",
        "| target | measured | result |",
        "|---|---|---|",
    ]
    lines += [
        f"| {t['target']} | {t['value']} | {_verdict(t['pass'])} |" for t in results["targets"]
    ]
    lines += [
        "",
        "## Corpus detection",
        "",
        "| tool | detected | recall | false positives | errors (malicious/benign) | total s |",
        "|---|---|---|---|---|---|",
    ]
    for tool, t in results["corpus"]["totals"].items():
        lines.append(
            f"| {tool} | {t['detected']}/{t['malicious']} | {t['recall']:.0%} "
            f"| {t['false_positives']}/{t['benign']} "
            f"| {t['errors_on_malicious']}/{t['errors_on_benign']} | {t['seconds_total']} |"
        )
    for key, title in (("dense_pickle", "opcode-dense pickle"), ("torch_zip", "torch zip")):
        if key not in results["throughput"]:
            continue
        size = results["inputs"][key] / MB
        lines += [
            "",
            f"## Throughput: {title} ({size:.0f} MB, median of {results['repeat']})",
            "",
            "| tool | MB/s | MB/s net of start-up | median s | start-up s | peak RSS MB | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for tool, v in results["throughput"][key].items():
            note = v["detail"] or ("" if v["ok"] else "error")
            lines.append(
                f"| {tool} | {v['mb_per_s']} | {v['net_mb_per_s']} | {v['seconds_median']} "
                f"| {v['startup_s']} | {v['peak_rss_mb']} | {note} |"
            )
    rows = results["corpus"]["rows"]
    tools = list(rows[0]["results"]) if rows else []
    lines += [
        "",
        "## Per sample",
        "",
        "X = flagged, . = not flagged, E = error (counts as not flagged)",
        "",
        "| sample | malicious | " + " | ".join(tools) + " |",
        "|---|---|" + "---|" * len(tools),
    ]
    for r in rows:
        cells = " | ".join(_mark(r["results"][t]) for t in tools)
        lines.append(f"| {r['name']} | {'yes' if r['malicious'] else 'no'} | {cells} |")
    return "\n".join(lines) + "\n"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and a corpus subset")
    parser.add_argument("--peers", default=",".join(peers.PEERS), help="comma-separated peers")
    parser.add_argument("--repeat", type=int, help="runs per throughput measurement (median)")
    parser.add_argument("--skip-corpus", action="store_true", help="skip the detection table")
    parser.add_argument("--skip-rss", action="store_true", help="skip the large peak-RSS run")
    parser.add_argument("--skip-speed", action="store_true", help="skip the throughput runs")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds before one tool run is killed"
    )
    args = parser.parse_args(argv)
    args.tools = [t for t in args.peers.split(",") if t]
    if unknown := set(args.tools) - set(peers.PEERS):
        parser.error(f"unknown peers: {sorted(unknown)}")
    return args


def _measure_speed(results: dict[str, Any], sizes: Sizes, tools: list[str], repeat: int) -> None:
    dense = WORK / "dense.pkl"
    tzip = WORK / "torch.pt"
    print(f"== inputs: pickle {sizes.dense_pickle / MB:.0f} MB, zip {sizes.torch_zip / MB:.0f} MB")
    make_dense_pickle(dense, sizes.dense_pickle)
    make_torch_zip(tzip, sizes.torch_zip)
    results["inputs"] = {"dense_pickle": dense.stat().st_size, "torch_zip": tzip.stat().st_size}
    print("== throughput: dense pickle", flush=True)
    dense_tp = throughput(dense, tools, repeat)
    print("== throughput: torch zip", flush=True)
    results["throughput"] = {"dense_pickle": dense_tp, "torch_zip": throughput(tzip, tools, repeat)}


def _measure_rss(results: dict[str, Any], sizes: Sizes, skip: bool) -> None:
    if skip:
        results["peak_rss"] = {"file_mb": 0, "peak_rss_mb": 0, "ok": False, "detail": "skipped"}
        return
    big = WORK / "big.pt"
    print(f"== peak RSS on a {sizes.big_zip / MB:.0f} MB torch zip", flush=True)
    try:
        make_big_torch_zip(big, sizes.big_zip)
        results["peak_rss"] = peak_rss(big)
    finally:
        big.unlink(missing_ok=True)
    print(f"  {results['peak_rss']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run everything; write bench/results/scanner[-quick].{json,md}."""
    args = _parse(argv)
    sizes = QUICK if args.quick else FULL
    repeat = args.repeat or sizes.repeat
    peers.ensure_venv()
    peers.set_timeout(args.timeout)
    WORK.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "quick": args.quick,
        "repeat": repeat,
        "timeout_s": args.timeout,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": _versions(args.tools),
    }
    rows: list[SampleRow] = []
    if not args.skip_corpus:
        print("== corpus detection", flush=True)
        rows = run_corpus(args.tools, quick=args.quick)
    results["corpus"] = {"totals": corpus_totals(rows), "rows": [asdict(r) for r in rows]}
    results["throughput"] = {}
    if not args.skip_speed:
        _measure_speed(results, sizes, args.tools, repeat)
    _measure_rss(results, sizes, skip=args.skip_rss)
    results["partial"] = [n for n in ("corpus", "speed", "rss") if getattr(args, f"skip_{n}")]
    results["targets"] = evaluate(results)
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # Only a full, unskipped run may write the published scanner.{json,md}.
    stem = "scanner-quick" if args.quick else "scanner"
    if results["partial"] and not args.quick:
        stem = "scanner-partial"
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown(results))
    print("== targets")
    for t in results["targets"]:
        print(f"  {_verdict(t['pass'])}  {t['target']}: {t['value']}")
    print(f"wrote {RESULTS / stem}.json and .md")
    return 0


def _versions(tools: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        from mamori import __version__  # noqa: PLC0415

        out["mamori"] = __version__
    except ImportError:
        out["mamori"] = "?"
    listing = subprocess.run(
        [str(peers.BIN / "python"), "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        installed = {p["name"].lower(): p["version"] for p in json.loads(listing.stdout)}
    except ValueError:
        installed = {}
    for tool in tools:
        out[tool] = installed.get(tool, "?")
    return out


if __name__ == "__main__":
    sys.exit(main())
