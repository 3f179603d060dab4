"""The table-driven corpus test: every sample gets the verdict and rule ids it declares.

Malicious samples must come out UNSAFE with every expected rule reported (exact ids, or
``PREFIX*`` patterns) and at least one matching finding at MEDIUM or above; benign samples
must come out SAFE with no finding at MEDIUM or above. The corpus is built once per session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import mamori.testing
from mamori.findings import Severity, Verdict
from mamori.scan import scan_path
from mamori.testing import Sample, all_samples, build_corpus, missing_needs, rule_matches

# One worker builds the corpus once and scans it (make test runs xdist with --dist loadgroup).
pytestmark = pytest.mark.xdist_group("corpus")

SAMPLES = all_samples()

# Detection gaps found by this corpus and owned by other modules, as of the corpus's first
# run. Strict xfail: when a gap is fixed the test XPASSes and fails, so delete its entry.
KNOWN_GAPS: dict[str, str] = {}


def _param(sample: Sample):
    marks = []
    if sample.name in KNOWN_GAPS:
        marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[sample.name]))
    return pytest.param(sample, id=sample.name, marks=marks)


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("corpus")
    build_corpus(dest)
    return dest


def _describe(report) -> str:
    return (
        "; ".join(
            f"{f.rule_id}/{f.severity.label} at {f.location}: {f.message}" for f in report.findings
        )
        or "no findings"
    )


@pytest.mark.parametrize("sample", [_param(s) for s in SAMPLES])
def test_sample_gets_its_declared_verdict_and_rules(sample: Sample, corpus_dir: Path) -> None:
    if missing := missing_needs(sample):
        pytest.skip(f"needs {', '.join(missing)}")
    report = scan_path(corpus_dir / sample.relpath)
    found = {f.rule_id for f in report.findings}
    if sample.malicious:
        assert report.verdict is Verdict.UNSAFE, f"{sample.technique}: {_describe(report)}"
        missing_rules = [r for r in sample.expected_rules if not rule_matches(r, found)]
        assert not missing_rules, f"missing {missing_rules}; got {_describe(report)}"
        assert any(
            f.severity >= Severity.MEDIUM
            and any(rule_matches(r, [f.rule_id]) for r in sample.expected_rules)
            for f in report.findings
        ), f"no expected rule at MEDIUM or above: {_describe(report)}"
    else:
        assert report.verdict is Verdict.SAFE, _describe(report)
        loud = [f for f in report.findings if f.severity >= Severity.MEDIUM]
        assert not loud, _describe(report)


def test_every_malicious_sample_declares_rules_and_every_benign_one_none() -> None:
    for sample in SAMPLES:
        assert bool(sample.expected_rules) == sample.malicious, sample.name


def test_every_sample_names_its_technique_and_family() -> None:
    for sample in SAMPLES:
        assert sample.technique
        assert sample.family in mamori.testing.FAMILIES


def test_known_gaps_name_real_samples() -> None:
    assert set(KNOWN_GAPS) <= {s.name for s in SAMPLES}


def test_sample_names_and_paths_are_unique() -> None:
    assert len({s.name for s in SAMPLES}) == len(SAMPLES)
    assert len({s.relpath for s in SAMPLES}) == len(SAMPLES)


def test_prefix_pattern_matches_any_rule_with_that_prefix() -> None:
    assert rule_matches("MAM-GGUF-*", ["MAM-GEN-001", "MAM-GGUF-003"])


def test_prefix_pattern_does_not_match_another_area() -> None:
    assert not rule_matches("MAM-GGUF-*", ["MAM-GEN-001", "MAM-GGU-003"])


def test_exact_rule_id_needs_an_exact_match() -> None:
    assert not rule_matches("MAM-ZIP-003", ["MAM-ZIP-0031", "MAM-ZIP-00"])


def test_build_corpus_writes_only_the_requested_families(tmp_path: Path) -> None:
    built = build_corpus(tmp_path, families={"pickle"})
    assert built
    assert {s.family for s in built} == {"pickle"}
    assert all((tmp_path / s.relpath).is_file() for s in built)


def test_build_corpus_rejects_an_unknown_family(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown corpus families"):
        build_corpus(tmp_path, families={"no-such-family"})


def test_build_corpus_is_byte_for_byte_reproducible(tmp_path: Path, corpus_dir: Path) -> None:
    families = {"pickle", "archive", "numpy", "safetensors"}
    for sample in build_corpus(tmp_path, families=families):
        again = (tmp_path / sample.relpath).read_bytes()
        assert again == (corpus_dir / sample.relpath).read_bytes(), sample.name


def test_public_names_match_dunder_all() -> None:
    public = {n for n in vars(mamori.testing) if not n.startswith("_")} - {"annotations", "corpus"}
    assert public == set(mamori.testing.__all__)


def test_building_the_corpus_never_loads_a_sample(tmp_path: Path, monkeypatch) -> None:
    import pickle

    import joblib
    import numpy as np
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("a corpus builder tried to load a sample")

    for owner, name in (
        (pickle, "load"),
        (pickle, "loads"),
        (pickle, "Unpickler"),
        (torch, "load"),
        (torch.jit, "load"),
        (joblib, "load"),
        (np, "load"),
    ):
        monkeypatch.setattr(owner, name, refuse)
    assert build_corpus(tmp_path)


def test_every_expected_rule_is_in_the_catalogue() -> None:
    from mamori.scan import RULES

    for sample in SAMPLES:
        for expected in sample.expected_rules:
            assert rule_matches(expected, RULES), f"{sample.name}: {expected} is not a rule"
