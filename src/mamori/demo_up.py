"""What ``make up`` runs: build a sample corpus, scan it for real, show the reports.

``python -m mamori.demo_up`` writes benign and malicious samples (harmless payloads such as
``os.system("true")``; nothing here ever loads them) under ``.mamori/demo/`` in the current
directory, scans every sample with :func:`mamori.scan.scan_path`, prints the text report for
a handful of them and how the whole corpus came out, and writes the full JSON and SARIF
reports next to the samples. Samples whose libraries are not installed (torch is only a test
extra) are skipped, so this runs on a fresh machine without torch.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Final

from rich.console import Console

from mamori.findings import ScanReport, Verdict
from mamori.scan import scan_path
from mamori.scan.report import ReportFormat, render
from mamori.testing.corpus import Sample, all_samples, build_corpus

__all__ = ["DEMO_DIR", "main", "run_demo"]

DEMO_DIR: Final = Path(".mamori") / "demo"

# A few samples worth reading in full: benign and hostile, pickle, torch and other formats.
_SHOWCASE: Final = (
    "pickle-plain-data-protocol-4",
    "pickle-os-system-reduce",
    "torch-zip-state-dict",
    "torch-zip-malicious-data-pkl",
    "safetensors-basic",
    "archive-zip-path-traversal",
)


def _tally(samples: Sequence[Sample], reports: Sequence[ScanReport]) -> tuple[list[str], list[str]]:
    """Names of the samples mamori got wrong: benign called UNSAFE, malicious called SAFE."""
    false_alarms: list[str] = []
    missed: list[str] = []
    for sample, report in zip(samples, reports, strict=True):
        unsafe = report.verdict is Verdict.UNSAFE
        if sample.malicious and not unsafe:
            missed.append(sample.name)
        elif not sample.malicious and unsafe:
            false_alarms.append(sample.name)
    return false_alarms, missed


_EXAMPLE_POLICY: Final = """\
# An example mamori policy: see README.md, "Policy file".
threshold = "high"          # findings at or above this make a file UNSAFE

[[suppress]]
rule = "MAM-GEN-003"        # "member format not recognised": expected for these samples
path = "*"
reason = "demo: archive members here are plain text on purpose"
"""


def run_demo(base: Path, console: Console, *, families: Collection[str] | None = None) -> int:
    """Build the corpus under ``base/.mamori/demo``, scan it and print the results.

    ``families`` limits the corpus to some sample families (the tests use this to stay fast).
    """
    root = base / DEMO_DIR
    samples_dir = root / "samples"
    reports_dir = root / "reports"
    # Only ever remove our own generated folder, so a rerun starts from a clean corpus.
    shutil.rmtree(samples_dir, ignore_errors=True)
    reports_dir.mkdir(parents=True, exist_ok=True)

    console.print(f"Building sample models in {samples_dir} ...")
    started = time.perf_counter()
    samples = build_corpus(samples_dir, families=families)
    skipped = len(all_samples(families)) - len(samples)
    console.print(
        f"  {len(samples)} samples written in {time.perf_counter() - started:.1f} s"
        + (f" ({skipped} skipped: their libraries are not installed)" if skipped else "")
    )

    started = time.perf_counter()
    reports = [scan_path(samples_dir / s.relpath) for s in samples]
    elapsed = time.perf_counter() - started
    console.print(f"  scanned {len(reports)} samples in {elapsed:.2f} s\n")

    showcase = [r for s, r in zip(samples, reports, strict=True) if s.name in _SHOWCASE]
    console.print(render(showcase, ReportFormat.TEXT, color=console.is_terminal), end="")

    json_path = reports_dir / "corpus.json"
    sarif_path = reports_dir / "corpus.sarif"
    json_path.write_text(render(reports, ReportFormat.JSON), encoding="utf-8")
    sarif = render(reports, ReportFormat.SARIF, base_dir=base.resolve())
    sarif_path.write_text(sarif, encoding="utf-8")

    benign = sum(1 for s in samples if not s.malicious)
    false_alarms, missed = _tally(samples, reports)
    console.print("\n[bold]Whole corpus[/bold]")
    console.print(
        f"  benign samples called SAFE:      {benign - len(false_alarms)}/{benign}\n"
        f"  malicious samples called UNSAFE: "
        f"{len(samples) - benign - len(missed)}/{len(samples) - benign}"
    )
    if false_alarms:
        console.print(f"  false alarms: {', '.join(false_alarms)}", markup=False)
    if missed:
        console.print(f"  not detected yet: {', '.join(missed)}", markup=False)
    policy_path = root / "policy.toml"
    policy_path.write_text(_EXAMPLE_POLICY, encoding="utf-8")
    console.print(f"\nReports for every sample:\n  {json_path}\n  {sarif_path}")
    hostile = [s for s in samples if s.malicious]
    first = samples_dir / hostile[0].relpath if hostile else samples_dir
    console.print(
        "\n[bold]Next steps[/bold]\n"
        f"  .venv/bin/mamori scan {first}\n"
        f"  .venv/bin/mamori scan {samples_dir} --format sarif --output results.sarif\n"
        f"  .venv/bin/mamori scan {samples_dir / 'archive'} --policy {policy_path}\n"
        "  .venv/bin/mamori rules\n"
        "  make test",
        markup=True,
        highlight=False,
    )
    return 0


def main() -> int:
    """Entry point of ``python -m mamori.demo_up``."""
    # A relative base keeps every path in the output short: .mamori/demo/samples/...
    return run_demo(Path(), Console(highlight=False, soft_wrap=True))


if __name__ == "__main__":
    sys.exit(main())
