"""Model entitlements from lineage: a model trained on labelled data carries those labels.

Invoking such a model requires the ``invoke_model`` permission *and*, for every lineage label,
the same ``read_field`` entitlement a user needs to read that data directly. A fine-tune on PHI
is therefore PHI to invoke.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mamori.policy import Decision, Effect, Entity, EntityUid

if TYPE_CHECKING:
    from mamori.genai.authorizer import Authorizer
    from mamori.genai.context import TrustedContext

__all__ = ["ModelCard", "authorize_model"]


@dataclass(frozen=True, slots=True)
class ModelCard:
    """A model with its tenant and the classification labels of its training data."""

    model_id: str
    tenant: str
    labels: frozenset[str]

    def derive(self, model_id: str, data_labels: frozenset[str]) -> ModelCard:
        """A fine-tune of this model on data with ``data_labels`` inherits both label sets."""
        return ModelCard(model_id, self.tenant, self.labels | data_labels)


def authorize_model(authorizer: Authorizer, ctx: TrustedContext, model: ModelCard) -> Decision:
    """Allow only if ``invoke_model`` and every lineage label's ``read_field`` are allowed."""
    entity = Entity(
        EntityUid(ctx.domain.entity_type("Model"), model.model_id),
        {"tenant": model.tenant, "labels": model.labels},
    )
    decision = authorizer.check(ctx, "invoke_model", entity)
    if not decision.allowed:
        return decision
    readable = authorizer.readable_labels(ctx, model.labels)
    missing = sorted(model.labels - readable)
    if missing:
        return Decision(Effect.DENY, decision.policy_ids, f"model lineage requires {missing}")
    return decision
