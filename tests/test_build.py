"""`python -m build` gives a wheel and an sdist that install in a fresh venv, and a plain
`pip install mamori` (no extras) scans every format of the sample corpus with the same
verdicts as the full install the test suite runs in (the issue-18 acceptance test).

Slow (two fresh venvs; pip may take the dependencies from its cache or the local wheels).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from mamori import __version__
from mamori.scan import scan_path
from mamori.testing.corpus import all_samples, build_corpus

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _clean_env() -> dict[str, str]:
    # The fresh venv must run the installed wheel, never this checkout's src/.
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("MAMORI_")}


def _run(*args, cwd=None, timeout=900):
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env=_clean_env(),
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def _fresh_venv(where: Path, requirement: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(where)
    python = where / "bin" / "python"
    result = _run(python, "-m", "pip", "install", "--quiet", requirement)
    assert result.returncode == 0, result.stderr[-3000:]
    return where / "bin" / "mamori"


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    result = _run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    wheels, sdists = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    assert len(wheels) == len(sdists) == 1
    return wheels[0], sdists[0]


def test_the_sdist_installs_in_a_fresh_venv_and_runs(dist, tmp_path):
    _, sdist = dist
    mamori = _fresh_venv(tmp_path / "venv", sdist)
    result = _run(mamori, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"mamori {__version__}\n")


def test_a_plain_install_scans_the_corpus_with_the_verdicts_of_the_full_install(dist, tmp_path):
    wheel, _ = dist
    mamori = _fresh_venv(tmp_path / "venv", wheel)
    # The plain install really lacks every extra (else this would prove nothing).
    probe = _run(tmp_path / "venv" / "bin" / "python", "-c", "import fastapi")
    assert probe.returncode != 0
    samples = build_corpus(tmp_path / "corpus")
    assert {s.family for s in samples} == {s.family for s in all_samples()}
    paths = [tmp_path / "corpus" / s.relpath for s in samples]
    result = _run(mamori, "scan", "--format", "json", *paths, cwd=tmp_path, timeout=600)
    assert result.returncode in {0, 1}, result.stderr[-3000:]
    plain = {
        Path(r["path"]): (r["verdict"], sorted({f["rule_id"] for f in r["findings"]}))
        for r in json.loads(result.stdout)["reports"]
    }
    for sample, path in zip(samples, paths, strict=True):
        full = scan_path(path)
        expected = (full.verdict.value, sorted({f.rule_id for f in full.findings}))
        assert plain[path] == expected, sample.name
        assert (full.verdict.value == "unsafe") is sample.malicious, sample.name
