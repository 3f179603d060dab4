"""Every decision in one place: Cedar, caches keyed by principal and policy version, audit.

The caches are keyed by the principal's full verified identity, the policy set version, the
revocation epoch and the exact resource entity, so a policy change, a revocation or an ACL change
in the source system can never be answered from a stale entry. Before any cache is read, every
use re-checks the context's ``exp``/``nbf`` and the store's revocations
(:meth:`ConversationStore.liveness`); a refusal is a deny with its own audit record.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from mamori.errors import PolicyError, StoreError
from mamori.policy import (
    Const,
    Decision,
    Effect,
    Entity,
    EntitySet,
    EntityUid,
    FilterNode,
    PolicyEngine,
    Request,
    context_text,
)

if TYPE_CHECKING:
    from collections.abc import Hashable, Mapping

    from mamori.audit import AuditLog
    from mamori.genai.context import TrustedContext
    from mamori.genai.state import ConversationStore

__all__ = ["Authorizer", "LruCache"]


class LruCache:
    """A small thread-safe LRU map."""

    def __init__(self, size: int) -> None:
        """Keep at most ``size`` entries."""
        self._size = size
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, key: Hashable) -> Any | None:
        """Return the cached value or ``None``."""
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            return None

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value`` under ``key``."""
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._data.clear()


class Authorizer:
    """Decides, caches and audits for one policy engine."""

    def __init__(
        self,
        engine: PolicyEngine,
        state: ConversationStore,
        audit: AuditLog,
        *,
        cache_size: int = 4096,
    ) -> None:
        """Bind the engine, the store-backed revocations and the audit log (memory, file, SQL)."""
        self.engine = engine
        self.state = state
        self.audit = audit
        self.decisions = LruCache(cache_size)
        self.filters = LruCache(cache_size)
        self.entity_sets = LruCache(cache_size)

    def _deny(self, ctx: TrustedContext, action: str, resource: str, reason: str) -> Decision:
        decision = Decision(Effect.DENY, (), reason)
        # A refusal that cannot be audited is still a refusal.
        with contextlib.suppress(StoreError):
            self._audit(ctx, action, resource, decision)
        return decision

    def refuse_unless_live(
        self, ctx: TrustedContext, action: str, resource: str
    ) -> Decision | None:
        """Return an audited deny if ``ctx`` may not be used now, else ``None``."""
        liveness = self.state.liveness(ctx)
        if liveness.live:
            return None
        return self._deny(ctx, action, resource, liveness.refusal)

    def _audit(self, ctx: TrustedContext, action: str, resource: str, decision: Decision) -> None:
        self.audit.record(
            principal=ctx.uid_text,
            action=action,
            resource=resource,
            decision=decision.effect.value,
            policy_ids=decision.policy_ids,
            reason=decision.reason,
        )

    def _principal_entities(self, ctx: TrustedContext) -> EntitySet:
        """The principal's own entities, parsed by Cedar once per principal and policy version."""
        key = (ctx.cache_key, self.engine.version)
        cached = self.entity_sets.get(key)
        if cached is not None:
            entity_set: EntitySet = cached
            return entity_set
        entity_set = self.engine.entity_set(ctx.entities())
        self.entity_sets.put(key, entity_set)
        return entity_set

    def check(
        self,
        ctx: TrustedContext,
        action: str,
        resource: Entity,
        *,
        context: Mapping[str, Any] | None = None,
        extra_entities: tuple[Entity, ...] = (),
    ) -> Decision:
        """Authorize ``action`` on ``resource`` (a trusted entity) and audit the decision."""
        liveness = self.state.liveness(ctx)
        if not liveness.live:
            return self._deny(ctx, action, str(resource.uid), liveness.refusal)
        return self._check_live(ctx, action, resource, liveness.epoch, context, extra_entities)

    def _check_live(  # noqa: PLR0917 -- the public check()'s arguments plus the epoch
        self,
        ctx: TrustedContext,
        action: str,
        resource: Entity,
        epoch: int,
        context: Mapping[str, Any] | None,
        extra_entities: tuple[Entity, ...],
    ) -> Decision:
        ctx_items = context or {}
        key = (
            ctx.cache_key,
            self.engine.version,
            epoch,
            action,
            # JSON, not a tuple of values: Cedar's 1 and true differ, Python's do not.
            resource.json_text(),
            context_text(ctx_items) if ctx_items else "",
        )
        cached = self.decisions.get(key) if not extra_entities else None
        if isinstance(cached, Decision):
            decision = cached
        else:
            request = Request(ctx.uid, ctx.domain.action(action), resource.uid, ctx_items)
            try:
                base = self._principal_entities(ctx)
            except PolicyError as exc:
                return self._deny(ctx, action, str(resource.uid), str(exc))
            decision = self.engine.decide(request, (resource, *extra_entities), base=base)
            if not extra_entities:
                self.decisions.put(key, decision)
        try:
            self._audit(ctx, action, str(resource.uid), decision)
        except StoreError:
            # An allow that cannot be audited is not given.
            return Decision(Effect.DENY, decision.policy_ids, "audit log unavailable")
        return decision

    def resource_filter(self, ctx: TrustedContext, action: str, resource_type: str) -> FilterNode:
        """Return the typed filter of ``resource_type`` items this context may ``action``.

        Any engine error or untranslatable residual is audited and returned as
        ``Const(False)``: the caller then returns an empty result, never an unfiltered one.
        """
        qualified = ctx.domain.entity_type(resource_type)
        liveness = self.state.liveness(ctx)
        if not liveness.live:
            self._deny(ctx, action, f"{qualified}::*", liveness.refusal)
            return Const(value=False)
        key = (ctx.cache_key, self.engine.version, liveness.epoch, action, qualified)
        cached = self.filters.get(key)
        if cached is not None:
            node: FilterNode = cached
            return node
        try:
            node, ids = self.engine.resource_filter(
                principal=ctx.uid,
                action=ctx.domain.action(action),
                resource_type=qualified,
                entities=(),
                base=self._principal_entities(ctx),
            )
        except PolicyError as exc:
            self._deny(ctx, action, f"{qualified}::*", f"filter build failed: {exc}")
            return Const(value=False)
        effect = Effect.DENY if isinstance(node, Const) and not node.value else Effect.ALLOW
        self._audit(ctx, action, f"{qualified}::*", Decision(effect, ids, "residual filter"))
        self.filters.put(key, node)
        return node

    def readable_labels(self, ctx: TrustedContext, labels: frozenset[str]) -> frozenset[str]:
        """The subset of data classification ``labels`` this context may read."""
        label_type = ctx.domain.entity_type("Classification")
        liveness = self.state.liveness(ctx)  # once for the whole set: one use of the context
        if not liveness.live:
            self._deny(ctx, "read_field", f"{label_type}::*", liveness.refusal)
            return frozenset()
        return frozenset(
            label
            for label in sorted(labels)
            if self._check_live(
                ctx, "read_field", Entity(EntityUid(label_type, label)), liveness.epoch, None, ()
            ).allowed
        )

    def invalidate(self) -> None:
        """Drop every cache (e.g. after an ACL change pushed by the source system)."""
        self.decisions.clear()
        self.filters.clear()
        self.entity_sets.clear()
