"""Cedar policy decisions through cedarpy, failing closed on every engine error.

:class:`PolicyEngine` loads and validates a policy set against its schema once, then answers
:meth:`~PolicyEngine.decide` (a full authorization call) and
:meth:`~PolicyEngine.resource_filter` (partial evaluation with the resource unknown, turned
into a typed filter). Any exception from the engine, any evaluation error inside a policy, and
any malformed answer is a deny: Cedar itself skips a policy whose evaluation errors, which would
silently drop a ``forbid``; we refuse that.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import cedarpy

from mamori.errors import ConfigError, PolicyError
from mamori.policy.filters import Const, FilterNode, residuals_to_filter

__all__ = [
    "Decision",
    "Effect",
    "Entity",
    "EntitySet",
    "EntityUid",
    "PolicyEngine",
    "Request",
    "context_text",
]


@dataclass(frozen=True, slots=True, order=True)
class EntityUid:
    """A Cedar entity reference such as ``Hospital::Patient::"p1"``."""

    type: str
    id: str

    def to_json(self) -> dict[str, str]:
        """Return Cedar's JSON form ``{"type": ..., "id": ...}``."""
        return {"type": self.type, "id": self.id}

    def __str__(self) -> str:
        """Render in Cedar syntax, for logs and audit records."""
        if _plain(self.id):
            return f'{self.type}::"{self.id}"'  # what json.dumps gives, without its cost
        return f"{self.type}::{json.dumps(self.id)}"


def _unescaped(text: str) -> bool:
    """True when ``text`` needs no escape in a Cedar string: printable, no quote or backslash."""
    return text.isprintable() and '"' not in text and "\\" not in text


def _plain(text: str) -> bool:
    """True when ``text`` also quotes as itself in JSON (which escapes non-ASCII)."""
    return text.isascii() and _unescaped(text)


def _frozen_empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Entity:
    """An entity with its attributes and parents, as supplied by a trusted source."""

    uid: EntityUid
    attrs: Mapping[str, Any] = field(default_factory=_frozen_empty)
    parents: tuple[EntityUid, ...] = ()
    _text: str | None = field(default=None, init=False, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """Return Cedar's JSON entity form; sets become sorted lists."""
        return {
            "uid": self.uid.to_json(),
            "attrs": {k: _json_value(v) for k, v in self.attrs.items()},
            "parents": [p.to_json() for p in self.parents],
        }

    def json_text(self) -> str:
        """:meth:`to_json` as canonical text (sorted keys), computed once per entity.

        The same text keys the decision cache and is what Cedar parses, so the two can never
        disagree about the entity, and a decision serialises it once rather than twice.
        """
        text = self._text
        if text is None:
            text = json.dumps(self.to_json(), sort_keys=True)
            object.__setattr__(self, "_text", text)
        return text


def _json_array(entities: Iterable[Entity]) -> str:
    # Each element is a complete JSON object; joining them is an array, not text assembly.
    return "[" + ",".join(e.json_text() for e in entities) + "]"


def context_text(context: Mapping[str, Any]) -> str:
    """A request context as canonical JSON text, in the form Cedar is given it."""
    return json.dumps({k: _json_value(v) for k, v in context.items()}, sort_keys=True)


def _json_value(value: Any) -> Any:
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, EntityUid):
        return {"__entity": value.to_json()}
    return value


class EntitySet:
    """Entities parsed and validated by Cedar once, reused by several requests.

    Built by :meth:`PolicyEngine.entity_set`. A principal's own entities (the user and its
    roles) are the same in every request of a session; parsing them once instead of per call
    is a third of a partial evaluation.
    """

    __slots__ = ("_ancestors", "_handle", "entities", "version")

    def __init__(
        self, handle: cedarpy.Entities, version: str, entities: tuple[Entity, ...] = ()
    ) -> None:
        """Wrap a handle validated against the schema of policy version ``version``.

        ``entities`` are the entities the handle was parsed from.
        """
        self._handle = handle
        self.version = version
        self.entities = entities
        self._ancestors: dict[EntityUid, frozenset[EntityUid]] = {}

    def ancestors(self, uid: EntityUid) -> frozenset[EntityUid]:
        """What ``uid`` is ``in`` through these entities' parents, computed once per uid."""
        found = self._ancestors.get(uid)
        if found is None:
            found = self._ancestors[uid] = _ancestors(uid, self.entities)
        return found

    def with_added(self, entities: Iterable[Entity], schema: cedarpy.Schema) -> cedarpy.Entities:
        """A new handle: these entities plus ``entities``, the whole validated by ``schema``."""
        delta = tuple(entities)
        if not delta:
            return self._handle
        return self._handle.with_added_json_str(_json_array(delta), schema)


def _ancestors(uid: EntityUid, entities: Iterable[Entity]) -> frozenset[EntityUid]:
    """The transitive parents of ``uid``: Cedar's ``in`` over this entity graph."""
    parents = {e.uid: e.parents for e in entities}
    seen: set[EntityUid] = set()
    stack = list(parents.get(uid, ()))
    while stack:
        parent = stack.pop()
        if parent not in seen:
            seen.add(parent)
            stack.extend(parents.get(parent, ()))
    return frozenset(seen)


def _cedar_literal(uid: EntityUid) -> str:
    # cedarpy's partial evaluator only takes entity references in Cedar syntax. Rather than
    # re-implement Cedar's string escaping, refuse any id that would need it.
    if not uid.id or not _unescaped(uid.id):
        raise PolicyError("entity id needs escaping; refusing partial evaluation")
    return f'{uid.type}::"{uid.id}"'


@dataclass(frozen=True, slots=True)
class Request:
    """A full authorization request."""

    principal: EntityUid
    action: EntityUid
    resource: EntityUid
    context: Mapping[str, Any] = field(default_factory=_frozen_empty)


class Effect(enum.Enum):
    """The two outcomes; there is no third "not applicable" that callers could treat as allow."""

    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to a :class:`Request`, with the policy ids that determined it."""

    effect: Effect
    policy_ids: tuple[str, ...]
    reason: str

    @property
    def allowed(self) -> bool:
        """True only for an explicit allow."""
        return self.effect is Effect.ALLOW


class _ScopedPolicies:
    """The policies whose scope can match a request; Cedar sees only those.

    Evaluation cost grows with the policy count and most policies are scoped to one action and
    one resource type, so handing Cedar the whole set (and translating a residual for every
    policy) wasted most of a decision. Only scope clauses that are false for *every* request
    with that action and resource type drop a policy: ``action == A`` with another action, and
    ``resource is T`` / ``resource == T::"x"`` with another type. ``in`` clauses on the action
    and resource depend on hierarchies Cedar holds, so they always keep the policy. Policy ids
    and annotations are kept, so decisions name the same determining policies as with the
    whole set.

    A filter's partial evaluation also knows the principal and every entity Cedar can see, so
    its principal scope is decided here too (a receptionist's policies never reach a doctor's
    partial evaluation): ``principal == E``, ``in E`` and ``is T [in E]`` over the principal's
    ancestors, which are exactly Cedar's ``in`` over that entity graph. Cedar checks the scope
    before the conditions, so a dropped policy could not have applied, nor errored.
    """

    _MAX_SUBSETS = 4096

    def __init__(self, text: str, whole: cedarpy.PolicySet) -> None:
        self._whole = whole
        est = json.loads(cedarpy.policies_to_json_str(text))
        # Templates are linked by id across the set; keep such sets whole.
        self._static: dict[str, Any] | None = (
            None if est.get("templates") or est.get("templateLinks") else est["staticPolicies"]
        )
        self._kept: dict[tuple[EntityUid, str], dict[str, Any]] = {}
        self._subsets: dict[tuple[EntityUid, str, tuple[str, ...]], cedarpy.PolicySet] = {}

    def get(
        self,
        action: EntityUid,
        resource_type: str,
        principal: tuple[EntityUid, frozenset[EntityUid]] | None = None,
    ) -> cedarpy.PolicySet:
        """The subset for this action and resource type, and ``(principal, ancestors)``."""
        if self._static is None:
            return self._whole
        kept = self._kept.get((action, resource_type))
        if kept is None:
            kept = {
                pid: policy
                for pid, policy in self._static.items()
                if _scope_can_match(policy, action, resource_type)
            }
            self._kept[(action, resource_type)] = kept
        if principal is None:
            ids = tuple(kept)
        else:
            uid, ancestors = principal
            ids = tuple(
                pid
                for pid, policy in kept.items()
                if _principal_can_match(policy["principal"], uid, ancestors)
            )
        key = (action, resource_type, ids)
        subset = self._subsets.get(key)
        if subset is None:
            subset = cedarpy.PolicySet.from_json_str(
                json.dumps(
                    {
                        "staticPolicies": {pid: kept[pid] for pid in ids},
                        "templates": {},
                        "templateLinks": [],
                    }
                )
            )
            # Policies scoped to single users give one subset per such user: bound the map.
            if len(self._subsets) >= self._MAX_SUBSETS:
                self._subsets.clear()
            # A racing thread builds the same subset; either copy is correct.
            self._subsets[key] = subset
        return subset


def _principal_can_match(
    scope: Mapping[str, Any], uid: EntityUid, ancestors: frozenset[EntityUid]
) -> bool:
    op = scope["op"]
    if op == "is" and scope["entity_type"] != uid.type:
        return False
    # ``in`` of an ``is ... in`` clause, or the scope itself for ``==`` and ``in``.
    clause = scope.get("in") if op == "is" else scope
    if op not in {"==", "in", "is"} or clause is None or "entity" not in clause:
        return True  # All, a bare ``is``, or a template slot: nothing more to decide here
    target = EntityUid(clause["entity"]["type"], clause["entity"]["id"])
    return target == uid or (op != "==" and target in ancestors)


def _scope_can_match(policy: Mapping[str, Any], action: EntityUid, resource_type: str) -> bool:
    action_scope, resource_scope = policy["action"], policy["resource"]
    if action_scope["op"] == "==" and action_scope.get("entity") != action.to_json():
        return False
    op = resource_scope["op"]
    if op == "is":
        return bool(resource_scope["entity_type"] == resource_type)
    if op == "==" and "entity" in resource_scope:
        return bool(resource_scope["entity"]["type"] == resource_type)
    return True


class PolicyEngine:
    """A validated Cedar policy set and schema."""

    def __init__(self, *, policies: str, schema: str, source: str = "<memory>") -> None:
        """Parse and validate; an invalid or empty policy set raises :class:`ConfigError`."""
        if not policies.strip():
            msg = f"{source}: the policy set is empty"
            raise ConfigError(msg)
        try:
            result = cedarpy.validate_policies(policies, schema)
            self._policies = cedarpy.PolicySet.from_str(policies)
            self._schema = cedarpy.Schema.from_str(schema)
        except (ValueError, RuntimeError, TypeError) as exc:
            msg = f"{source}: cannot parse the policies or schema"
            raise ConfigError(msg) from exc
        if not result.validation_passed:
            errors = "; ".join(str(e) for e in result.errors)
            msg = f"{source}: policies do not validate against the schema: {errors}"
            raise ConfigError(msg)
        self.version = hashlib.sha256(f"{policies}\x00{schema}".encode()).hexdigest()[:16]
        self._scoped = _ScopedPolicies(policies, self._policies)

    @classmethod
    def from_files(cls, policies: Path, schema: Path) -> PolicyEngine:
        """Load a ``.cedar`` file and its ``.cedarschema``."""
        try:
            text, schema_text = policies.read_text("utf-8"), schema.read_text("utf-8")
        except OSError as exc:
            msg = f"cannot read {policies} or {schema}"
            raise ConfigError(msg) from exc
        return cls(policies=text, schema=schema_text, source=str(policies))

    @classmethod
    def packaged(cls, domain: str) -> PolicyEngine:
        """Load the example policies shipped as package data, e.g. ``"hospital"``."""
        data = resources.files("mamori.policy") / "data"
        try:
            text = (data / f"{domain}.cedar").read_text("utf-8")
            schema = (data / f"{domain}.cedarschema").read_text("utf-8")
        except OSError as exc:
            msg = f"no packaged policy domain {domain!r}"
            raise ConfigError(msg) from exc
        return cls(policies=text, schema=schema, source=f"mamori.policy/data/{domain}.cedar")

    def entity_set(self, entities: Iterable[Entity]) -> EntitySet:
        """Parse and validate ``entities`` once, for :meth:`decide` and :meth:`resource_filter`.

        Raises:
            PolicyError: when Cedar refuses them (the caller must deny).
        """
        kept = tuple(entities)
        try:
            handle = cedarpy.Entities.from_json_str(_json_array(kept), self._schema)
        except Exception as exc:
            raise PolicyError("entities do not conform to the schema") from exc
        return EntitySet(handle, self.version, kept)

    def _entities(
        self, entities: Iterable[Entity], base: EntitySet | None
    ) -> list[dict[str, Any]] | cedarpy.Entities:
        if base is None:
            return [e.to_json() for e in entities]
        if base.version != self.version:
            raise PolicyError("entity set was built for another policy version")
        return base.with_added(entities, self._schema)

    def decide(
        self, request: Request, entities: Iterable[Entity], *, base: EntitySet | None = None
    ) -> Decision:
        """Make a full authorization decision. Never raises: every failure is a deny.

        ``entities`` are added to ``base`` (from :meth:`entity_set`) when one is given.
        """
        try:
            cedar_request = {
                "principal": request.principal.to_json(),
                "action": request.action.to_json(),
                "resource": request.resource.to_json(),
                "context": {k: _json_value(v) for k, v in request.context.items()},
            }
            policies = self._scoped.get(request.action, request.resource.type)
            result = cedarpy.is_authorized(
                cedar_request, policies, self._entities(entities, base), self._schema
            )
            diagnostics = result.diagnostics
            names = diagnostics.id_annotations_by_reason
            ids = tuple(sorted(names.get(r, r) for r in diagnostics.reasons))
            if diagnostics.errors:
                return Decision(Effect.DENY, ids, f"policy evaluation error: {diagnostics.errors}")
            if result.allowed:
                return Decision(Effect.ALLOW, ids, "permitted")
            reason = "forbidden by policy" if ids else "no policy permits this request"
            return Decision(Effect.DENY, ids, reason)
        # NOTE: this is the fail-closed boundary around a native engine; whatever it raises
        # (ValueError for bad input, a Rust panic surfaced as BaseException subclasses, ...)
        # becomes a deny that names the error. Nothing carries on as allowed.
        except Exception as exc:  # noqa: BLE001 -- see NOTE above
            return Decision(Effect.DENY, (), f"policy engine error: {type(exc).__name__}")

    def resource_filter(
        self,
        *,
        principal: EntityUid,
        action: EntityUid,
        resource_type: str,
        entities: Iterable[Entity],
        context: Mapping[str, Any] | None = None,
        base: EntitySet | None = None,
    ) -> tuple[FilterNode, tuple[str, ...]]:
        """Return the filter over ``resource_type`` that this principal may ``action``.

        ``Const(False)`` means nothing is allowed. Raises :class:`PolicyError` on any engine
        error or untranslatable residual; callers must deny.
        """
        request = {
            "principal": _cedar_literal(principal),
            "action": _cedar_literal(action),
            "context": {k: _json_value(v) for k, v in (context or {}).items()},
        }
        entities = tuple(entities)
        if base is not None and not entities:
            ancestors = base.ancestors(principal)
        else:
            ancestors = _ancestors(principal, (*(base.entities if base else ()), *entities))
        try:
            policies = self._scoped.get(action, resource_type, (principal, ancestors))
            result = cedarpy.is_authorized_partial(
                request, policies, self._entities(entities, base), self._schema
            )
            errors = result.diagnostics.errors
            decision = result.decision
            residuals = result.residuals
        except Exception as exc:
            raise PolicyError("partial evaluation failed") from exc
        if errors:
            msg = f"partial evaluation reported errors: {errors}"
            raise PolicyError(msg)
        if decision is cedarpy.Decision.Deny:
            return Const(value=False), ()
        if not isinstance(residuals, Mapping):
            raise PolicyError("partial evaluation returned malformed residuals")
        return residuals_to_filter(residuals, resource_type=resource_type)
