"""The sample record and the private builder record behind it."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Sample", "Spec", "missing_needs", "rule_matches", "spec"]

WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class Sample:
    """One corpus sample: where it was written, and what mamori must say about it.

    ``expected_rules`` holds rule ids the scan must report. An entry ending in ``*`` (such as
    ``"MAM-GGUF-*"``) is a prefix: any reported rule id starting with ``MAM-GGUF-`` satisfies
    it. Prefixes are used where a scanner's exact ids are not fixed yet; replace them by exact
    ids once they are. For a malicious sample at least one matching finding must be MEDIUM or
    above; a benign sample has no expected rules and must come out SAFE.
    """

    name: str
    relpath: str
    malicious: bool
    expected_rules: frozenset[str]
    family: str
    technique: str
    needs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Spec:
    """A sample plus the function that writes it to a path (never exported)."""

    sample: Sample
    build: Callable[[Path], None]


def missing_needs(sample: Sample) -> tuple[str, ...]:
    """The packages in ``sample.needs`` that cannot be imported here."""
    return tuple(n for n in sample.needs if importlib.util.find_spec(n) is None)


def rule_matches(expected: str, reported: Iterable[str]) -> bool:
    """Whether one ``expected_rules`` entry (exact id or ``PREFIX*``) is among ``reported``."""
    if expected.endswith(WILDCARD):
        prefix = expected[: -len(WILDCARD)]
        return any(r.startswith(prefix) for r in reported)
    return expected in set(reported)


def spec(
    name: str,
    relpath: str,
    *,
    family: str,
    technique: str,
    expected: Iterable[str] = (),
    malicious: bool | None = None,
    needs: tuple[str, ...] = (),
) -> Callable[[Callable[[Path], None]], Spec]:
    """Decorator turning a ``build(path)`` function into a :class:`Spec`.

    ``malicious`` defaults to "has expected rules", which holds for every sample so far.
    """
    rules = frozenset(expected)

    def wrap(build: Callable[[Path], None]) -> Spec:
        return Spec(
            Sample(
                name=name,
                relpath=relpath,
                malicious=bool(rules) if malicious is None else malicious,
                expected_rules=rules,
                family=family,
                technique=technique,
                needs=needs,
            ),
            build,
        )

    return wrap
