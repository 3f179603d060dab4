"""The MLflow integration: webhook receiver, resolution, sweep, promotion gate and its plugin.

Importing this package does not import MLflow; :mod:`.resolve`, :mod:`.sweep`, :mod:`.events`
and :mod:`.gate_plugin` need the ``mlflow`` extra.
"""

from __future__ import annotations

from mamori.lifecycle.mlflow.gate import (
    MLFLOW_PRINCIPAL,
    PRODUCTION_STAGE,
    SOURCE,
    BreakGlass,
    PromotionDecision,
    decide_promotion,
    grant_break_glass,
    is_protected,
)
from mamori.lifecycle.mlflow.webhook import Delivery, EventKind, parse_event, verify_delivery

__all__ = [
    "MLFLOW_PRINCIPAL",
    "PRODUCTION_STAGE",
    "SOURCE",
    "BreakGlass",
    "Delivery",
    "EventKind",
    "PromotionDecision",
    "decide_promotion",
    "grant_break_glass",
    "is_protected",
    "parse_event",
    "verify_delivery",
]
