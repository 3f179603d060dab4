"""The sample corpus: benign models written by the real libraries, and hostile ones.

:func:`build_corpus` writes every sample whose ``needs`` are importable under ``dest`` and
returns them; :func:`all_samples` lists every declared sample, built or not, so a caller can
see what was skipped (and :func:`missing_needs` says why). Malicious samples carry harmless
payloads (``os.system("true")``, a marker path under ``/tmp``) and must never be loaded:
they exist to be scanned. Nothing in this package unpickles or renders anything.

``Sample.expected_rules`` entries are exact rule ids or ``PREFIX*`` patterns matched with
:func:`rule_matches` (e.g. ``"MAM-GGUF-*"`` for a scanner whose ids are not settled yet).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from mamori.testing.corpus import archives, datasci, formats, pickles, torch_samples
from mamori.testing.corpus._model import Sample, Spec, missing_needs, rule_matches

__all__ = ["FAMILIES", "Sample", "all_samples", "build_corpus", "missing_needs", "rule_matches"]

_SPECS: tuple[Spec, ...] = (
    *pickles.SPECS,
    *torch_samples.SPECS,
    *datasci.SPECS,
    *archives.SPECS,
    *formats.SPECS,
)

FAMILIES: frozenset[str] = frozenset(s.sample.family for s in _SPECS)


def _check_unique() -> None:
    names = [s.sample.name for s in _SPECS]
    paths = [s.sample.relpath for s in _SPECS]
    if len(set(names)) != len(names) or len(set(paths)) != len(paths):
        msg = "corpus sample names and paths must be unique"
        raise RuntimeError(msg)


_check_unique()


def all_samples(families: Collection[str] | None = None) -> list[Sample]:
    """Every declared sample (of ``families``, if given), whether buildable here or not."""
    return [s.sample for s in _SPECS if families is None or s.sample.family in families]


def build_corpus(dest: Path, *, families: Collection[str] | None = None) -> list[Sample]:
    """Write every sample whose ``needs`` import under ``dest``; return those written.

    Samples whose packages are missing are skipped; compare with :func:`all_samples` to list
    them. Building is deterministic and never loads a sample.

    Raises:
        ValueError: ``families`` names a family no sample has.
    """
    if families is not None and (unknown := set(families) - FAMILIES):
        msg = f"unknown corpus families: {sorted(unknown)}; known: {sorted(FAMILIES)}"
        raise ValueError(msg)
    built: list[Sample] = []
    for entry in _SPECS:
        sample = entry.sample
        if families is not None and sample.family not in families:
            continue
        if missing_needs(sample):
            continue
        target = dest / sample.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        entry.build(target)
        built.append(sample)
    return built
