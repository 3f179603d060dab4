"""``make bench``: run every benchmark in this folder; results go to bench/results/.

Each benchmark runs in its own process. A benchmark that crashes makes this exit non-zero;
a missed target does not (targets are reported as PASS/FAIL by the benchmark itself).
Every ``*_bench.py`` here is run, scanner_bench.py first. ``--quick`` is passed on to every
benchmark; any other argument goes to scanner_bench.py only (``--timeout 300``, ``--skip-rss``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent

# scanner_bench first; then every other ``*_bench.py`` in this folder (genai, service and the
# format benches other engineers add), so a new bench runs without editing this file.
FIRST = "scanner_bench.py"


def _benchmarks() -> list[str]:
    others = sorted(p.name for p in BENCH.glob("*_bench.py") if p.name != FIRST)
    return [FIRST, *others]


def main() -> int:
    failed: list[str] = []
    for name in _benchmarks():
        script = BENCH / name
        args = sys.argv[1:] if name == FIRST else [a for a in sys.argv[1:] if a == "--quick"]
        print(f"== {name} {' '.join(args)}", flush=True)
        rc = subprocess.run([sys.executable, str(script), *args], check=False).returncode
        if rc != 0:
            print(f"!! {name} exited {rc}")
            failed.append(name)
    if failed:
        print(f"crashed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
