"""The MLflow integration: webhook receiver, resolution, sweep, promotion gate and its plugin.

Importing this package does not import MLflow; :mod:`.resolve`, :mod:`.sweep`, :mod:`.events`
and :mod:`.gate_plugin` need the ``mlflow`` extra.
"""

from __future__ import annotations

import os

# MLflow's client reports usage to MLflow's own servers unless told not to, and decides so
# when it is first imported. mamori sends nothing to any service its user did not configure,
# so every mamori module that imports MLflow does it through this package, after this line.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

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
