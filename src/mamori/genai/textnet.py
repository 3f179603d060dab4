"""The free-text net: Presidio pattern and checksum recognizers on a blank spaCy pipeline.

Field projection decides by JSON path; a free-text field (a note body, a call log) can still
carry an identifier of a stricter class than its own label, such as an MRN typed into a call
log that a receptionist may read. :class:`PresidioTextNet` finds such entities and replaces
every one whose classification the caller may not read with ``<LABEL:ENTITY>``.

It works offline by construction:

* the NLP engine is a :class:`~presidio_analyzer.nlp_engine.SpacyNlpEngine` whose ``nlp`` map
  is preloaded with ``spacy.blank("en")``, so Presidio never calls ``load()`` (which would try
  to download ``en_core_web_lg``) and no NER model runs;
* the recognizer registry is built from an explicit list, so Presidio's default registry
  (which adds the spaCy NER recognizer and dozens of country recognizers) is never loaded;
* Presidio's email recognizer validates domains with the module-level ``tldextract.extract``,
  whose first call fetches the Public Suffix List over HTTP. :class:`_OfflineEmailRecognizer`
  uses a ``TLDExtract`` with no suffix-list URLs and no cache directory instead, which reads
  the snapshot bundled in the tldextract wheel.

Every entity a recognizer can emit must have a label (:class:`ConfigError` otherwise), and a
detection failure redacts the whole string: the net fails closed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import spacy
import tldextract
from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
from presidio_analyzer.nlp_engine import SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    MedicalLicenseRecognizer,
    PhoneRecognizer,
    UrlRecognizer,
    UsSsnRecognizer,
)

from mamori.errors import ConfigError

if TYPE_CHECKING:
    from presidio_analyzer import EntityRecognizer, RecognizerResult

__all__ = [
    "DEFAULT_ENTITY_LABELS",
    "REDACTED_UNKNOWN",
    "PresidioTextNet",
    "default_recognizers",
    "pattern_recognizer",
]

#: What replaces a whole string when detection itself fails.
REDACTED_UNKNOWN = "<REDACTED>"

#: Entity type -> classification label for the built-in recognizers (hospital label set).
DEFAULT_ENTITY_LABELS: Mapping[str, str] = {
    # Contact details: the same class as a patient's phone and address fields.
    "EMAIL_ADDRESS": "PII",
    "PHONE_NUMBER": "PII",
    "URL": "PII",
    "IP_ADDRESS": "PII",
    # A clinician's licence/DEA number identifies staff, not a patient's condition.
    "MEDICAL_LICENSE": "PII",
    # A national id links records across systems; HIPAA lists it among the 18 identifiers
    # that make health data PHI, and no lower label fits, so it takes the strictest one.
    "US_SSN": "PHI",
    # Payment data has no label of its own in this set; fail closed to the strictest.
    "CREDIT_CARD": "PHI",
    "IBAN_CODE": "PHI",
}

# Presidio logs (at WARNING) every recognizer whose language differs from the request and
# every skipped entity; none of it is actionable here and it would leak text into logs.
logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)


class _OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email recognizer with a tldextract that never touches the network."""

    # No suffix-list URLs: never fetch. No cache dir: never read or write ~/.cache. The
    # bundled PSL snapshot (fallback_to_snapshot=True) answers every lookup.
    _EXTRACT = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)

    def validate_result(self, pattern_text: str) -> bool:
        """A match is an address only if its domain has a public suffix (offline check)."""
        return self._EXTRACT(pattern_text).fqdn != ""


def default_recognizers() -> list[EntityRecognizer]:
    """Pattern and checksum recognizers only: no NER, nothing that needs a model."""
    return [
        _OfflineEmailRecognizer(),
        PhoneRecognizer(),
        CreditCardRecognizer(),  # Luhn checksum
        IbanRecognizer(),  # ISO 13616 mod-97 checksum
        UsSsnRecognizer(),
        IpRecognizer(),
        UrlRecognizer(),
        MedicalLicenseRecognizer(),  # DEA number checksum
    ]


def pattern_recognizer(entity: str, regex: str, *, score: float = 0.9) -> PatternRecognizer:
    """A custom regex recognizer for a domain identifier (e.g. a hospital MRN)."""
    try:
        re.compile(regex)  # fail at configuration time, not on the first note
    except re.error as exc:
        msg = f"recognizer {entity!r} has an invalid pattern"
        raise ConfigError(msg) from exc
    return PatternRecognizer(
        supported_entity=entity, patterns=[Pattern(entity.lower(), regex, score)]
    )


def _blank_engine(language: str) -> SpacyNlpEngine:
    engine = SpacyNlpEngine(models=[{"lang_code": language, "model_name": "blank"}])
    # Preloading ``nlp`` makes ``is_loaded()`` true, so AnalyzerEngine never calls ``load()``
    # (which would download a model). A blank pipeline only tokenizes.
    # ``nlp`` is annotated as ``None`` in Presidio's __init__; its own load() assigns a dict.
    engine.nlp = {language: spacy.blank(language)}  # type: ignore[assignment]
    return engine


@dataclass(frozen=True, slots=True)
class _Span:
    start: int
    end: int
    entity: str
    label: str


class PresidioTextNet:
    """Redact entities whose classification is not readable; report the labels kept.

    An instance is a :data:`mamori.genai.projection.TextNet` (call it with the text and the
    readable labels) and its :meth:`labels` method is a gateway ``text_labeler``.
    """

    def __init__(
        self,
        entity_labels: Mapping[str, str] = DEFAULT_ENTITY_LABELS,
        *,
        extra_recognizers: Iterable[EntityRecognizer] = (),
        language: str = "en",
        score_threshold: float = 0.0,
    ) -> None:
        """Build the analyzer; every recognizer's entities must appear in ``entity_labels``."""
        recognizers = [*default_recognizers(), *extra_recognizers]
        for recognizer in recognizers:
            for entity in recognizer.supported_entities:
                if entity not in entity_labels:
                    msg = f"entity {entity!r} has no classification label"
                    raise ConfigError(msg)
        registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[language])
        self._labels = dict(entity_labels)
        self._language = language
        self._threshold = score_threshold
        self._analyzer = AnalyzerEngine(
            registry=registry,
            nlp_engine=_blank_engine(language),
            supported_languages=[language],
            default_score_threshold=score_threshold,
        )

    def _spans(self, text: str) -> list[_Span]:
        results: list[RecognizerResult] = self._analyzer.analyze(
            text=text, language=self._language, score_threshold=self._threshold
        )
        return [
            _Span(r.start, r.end, r.entity_type, self._labels[r.entity_type])
            for r in sorted(results, key=lambda r: (r.start, -r.end))
        ]

    def labels(self, text: str) -> frozenset[str]:
        """Labels of every entity found in ``text`` (for outbound sink checks).

        A detection failure labels the text with every known label, so a sink that does not
        accept all of them refuses it.
        """
        try:
            return frozenset(span.label for span in self._spans(text))
        # NOTE: Presidio and phonenumbers raise assorted types on odd input; any of them
        # means "unknown content", which is treated as the strictest content.
        except Exception:  # noqa: BLE001 -- see NOTE
            return frozenset(self._labels.values())

    def __call__(self, text: str, readable: frozenset[str]) -> tuple[str, frozenset[str]]:
        """Return ``text`` with unreadable entities replaced, and the labels left in it."""
        try:
            spans = self._spans(text)
        except Exception:  # noqa: BLE001 -- see NOTE in labels(): fail closed, redact it all
            return REDACTED_UNKNOWN, frozenset()
        kept = frozenset(s.label for s in spans if s.label in readable)
        redact = [s for s in spans if s.label not in readable]
        if not redact:
            return text, kept
        out: list[str] = []
        cursor = 0
        for span in _merge(redact):
            out.extend((text[cursor : span.start], f"<{span.label}:{span.entity}>"))
            cursor = span.end
        out.append(text[cursor:])
        # A readable entity overlapping a redacted one is gone with it; its label may not be,
        # which only over-taints the session (the safe direction).
        return "".join(out), kept


def _merge(spans: list[_Span]) -> list[_Span]:
    """Merge overlapping spans (sorted by start); the first span names the merged one."""
    merged: list[_Span] = []
    for span in spans:
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            merged[-1] = _Span(last.start, max(last.end, span.end), last.entity, last.label)
        else:
            merged.append(span)
    return merged
