"""Cedar policies: decisions, and residual filters for authorized retrieval."""

from __future__ import annotations

from mamori.policy.engine import (
    Decision,
    Effect,
    Entity,
    EntitySet,
    EntityUid,
    PolicyEngine,
    Request,
    context_text,
)
from mamori.policy.filters import (
    And,
    CompareOp,
    Const,
    FieldCompare,
    FieldContains,
    FieldContainsAny,
    FieldEq,
    FieldExists,
    FilterNode,
    Not,
    Or,
    Scalar,
    residuals_to_filter,
    simplify,
)

__all__ = [
    "And",
    "CompareOp",
    "Const",
    "Decision",
    "Effect",
    "Entity",
    "EntitySet",
    "EntityUid",
    "FieldCompare",
    "FieldContains",
    "FieldContainsAny",
    "FieldEq",
    "FieldExists",
    "FilterNode",
    "Not",
    "Or",
    "PolicyEngine",
    "Request",
    "Scalar",
    "context_text",
    "residuals_to_filter",
    "simplify",
]
