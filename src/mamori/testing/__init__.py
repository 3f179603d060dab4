"""Helpers for testing mamori and for testing *with* mamori: the sample corpus."""

from __future__ import annotations

from mamori.testing.corpus import (
    FAMILIES,
    Sample,
    all_samples,
    build_corpus,
    missing_needs,
    rule_matches,
)

__all__ = ["FAMILIES", "Sample", "all_samples", "build_corpus", "missing_needs", "rule_matches"]
