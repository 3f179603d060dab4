"""The MITRE ATLAS techniques the MLDR detectors label their events with.

Written by hand from the public ATLAS matrix (https://atlas.mitre.org/techniques); only the
ids our detectors emit, so a typo in a detector is caught by a test against this table.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

__all__ = ["ATLAS_TECHNIQUES", "atlas_name"]

ATLAS_TECHNIQUES: Final = MappingProxyType(
    {
        "AML.T0015": "Evade AI Model",
        "AML.T0024.000": "Exfiltration via AI Inference API: Infer Training Data Membership",
        "AML.T0024.001": "Exfiltration via AI Inference API: Invert AI Model",
        "AML.T0024.002": "Exfiltration via AI Inference API: Extract AI Model",
        "AML.T0034.000": "Cost Harvesting: Excessive Queries",
        "AML.T0043.001": "Craft Adversarial Data: Black-Box Optimization",
    }
)
"""ATLAS id -> technique name."""


def atlas_name(technique: str) -> str:
    """The name of an ATLAS ``technique`` id; ``KeyError`` for an id this table lacks."""
    return ATLAS_TECHNIQUES[technique]
