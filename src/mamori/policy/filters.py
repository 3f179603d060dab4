"""A typed filter AST, and the translation of Cedar residuals into it.

Partial evaluation with the resource unknown leaves, per policy, a residual expression over
``resource.<attr>``. :func:`residuals_to_filter` turns those into a small closed set of frozen
node types. Anything it does not recognise (``like``, ``if-then-else``, extension calls, a
comparison between two resource attributes, ...) raises :class:`PolicyError`, and callers deny.
Compilers (Qdrant, SQLAlchemy) match on the same closed set with ``assert_never``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from mamori.errors import PolicyError

__all__ = [
    "And",
    "CompareOp",
    "Const",
    "FieldCompare",
    "FieldContains",
    "FieldContainsAny",
    "FieldEq",
    "FieldExists",
    "FilterNode",
    "Not",
    "Or",
    "Scalar",
    "residuals_to_filter",
    "simplify",
]

Scalar: TypeAlias = str | int | bool


@dataclass(frozen=True, slots=True)
class Const:
    """Always true or always false."""

    value: bool


def _literal(value: Scalar) -> tuple[type, Scalar]:
    return (type(value), value)


class _Literals:
    """Equality and hashing that see a literal's type.

    Cedar's ``1`` and ``true`` are different values, Python's ``1 == True``; folding (which
    drops duplicates) and the filter cache must not merge ``x == 1`` with ``x == true``.
    """

    __slots__ = ()

    def _key(self) -> tuple[object, ...]:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        """Same node type, field and literals, each literal with its type."""
        return type(other) is type(self) and self._key() == other._key()

    def __hash__(self) -> int:
        """Consistent with :meth:`__eq__`."""
        return hash((type(self), self._key()))


@dataclass(frozen=True, slots=True, eq=False)
class FieldEq(_Literals):
    """``resource.<field> == value``."""

    field: str
    value: Scalar

    def _key(self) -> tuple[object, ...]:
        return (self.field, _literal(self.value))


@dataclass(frozen=True, slots=True, eq=False)
class FieldContains(_Literals):
    """``resource.<field>`` is a set that contains ``value``."""

    field: str
    value: Scalar

    def _key(self) -> tuple[object, ...]:
        return (self.field, _literal(self.value))


@dataclass(frozen=True, slots=True, eq=False)
class FieldContainsAny(_Literals):
    """``resource.<field>`` is a set sharing at least one element with ``values``."""

    field: str
    values: tuple[Scalar, ...]

    def _key(self) -> tuple[object, ...]:
        return (self.field, *(_literal(v) for v in self.values))


@dataclass(frozen=True, slots=True)
class FieldExists:
    """``resource has <field>``."""

    field: str


class CompareOp(enum.Enum):
    """Integer comparisons Cedar can leave in a residual."""

    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


@dataclass(frozen=True, slots=True)
class FieldCompare:
    """``resource.<field> <op> value`` for integers."""

    field: str
    op: CompareOp
    value: int


@dataclass(frozen=True, slots=True)
class And:
    """All children hold."""

    children: tuple[FilterNode, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """At least one child holds."""

    children: tuple[FilterNode, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """The child does not hold."""

    child: FilterNode


FilterNode: TypeAlias = (
    Const | FieldEq | FieldContains | FieldContainsAny | FieldExists | FieldCompare | And | Or | Not
)

_TRUE = Const(value=True)
_FALSE = Const(value=False)
_COMPARE_SWAP: Mapping[CompareOp, CompareOp] = {
    CompareOp.LT: CompareOp.GT,
    CompareOp.LE: CompareOp.GE,
    CompareOp.GT: CompareOp.LT,
    CompareOp.GE: CompareOp.LE,
}


def simplify(node: FilterNode) -> FilterNode:
    """Fold constants and duplicates so that an all-false filter is exactly ``Const(False)``.

    Idempotent: the folded filter keys the filter cache, so folding twice changes nothing.
    """
    if isinstance(node, And):
        return _conj(simplify(c) for c in node.children)
    if isinstance(node, Or):
        return _disj(simplify(c) for c in node.children)
    if isinstance(node, Not):
        return _neg(simplify(node.child))
    return node


# The three folding constructors below take already-folded children. The translator builds
# with them directly, so a residual is folded once, while it is read, not walked again.


def _fold(kind: type[And | Or], kids: Iterable[FilterNode]) -> FilterNode:
    # ``false`` absorbs an And and ``true`` an Or; the other constant is dropped.
    absorbing = kind is Or
    flat: list[FilterNode] = []
    for kid in kids:
        if type(kid) is Const:
            if kid.value is absorbing:
                return _TRUE if absorbing else _FALSE
            continue
        # Duplicates are dropped at every level: Cedar returns residuals in no fixed order,
        # and the filter (a cache key) must not depend on how the policies were nested.
        for leaf in kid.children if type(kid) is kind else (kid,):
            if leaf not in flat:
                flat.append(leaf)
    if not flat:
        return _FALSE if absorbing else _TRUE
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


def _conj(kids: Iterable[FilterNode]) -> FilterNode:
    return _fold(And, kids)


def _disj(kids: Iterable[FilterNode]) -> FilterNode:
    return _fold(Or, kids)


def _neg(child: FilterNode) -> FilterNode:
    if type(child) is Const:
        return _TRUE if not child.value else _FALSE
    if type(child) is Not:
        return child.child
    return Not(child)


class _Translator:
    """Translate one Cedar JSON expression (EST) for a known resource type."""

    def __init__(self, resource_type: str) -> None:
        self.resource_type = resource_type

    def boolean(self, expr: Any) -> FilterNode:  # noqa: C901, PLR0911, PLR0912 -- one flat dispatch over the closed node set reads best
        op, body = _single(expr)
        match op:
            case "Value":
                if isinstance(body, bool):
                    return _TRUE if body else _FALSE
                raise PolicyError("non-boolean literal in a boolean position")
            # Cedar evaluates ``&&`` and ``||`` lazily: ``false && e`` is false whatever ``e``
            # is, so ``e`` is not read (the forbids of other resource types end here).
            case "&&":
                left = self.boolean(body["left"])
                return _FALSE if left is _FALSE else _conj((left, self.boolean(body["right"])))
            case "||":
                left = self.boolean(body["left"])
                return _TRUE if left is _TRUE else _disj((left, self.boolean(body["right"])))
            case "!":
                return _neg(self.boolean(body["arg"]))
            case "==" | "!=":
                node = self._equality(body["left"], body["right"])
                return node if op == "==" else _neg(node)
            case "<" | "<=" | ">" | ">=":
                return self._compare(CompareOp(op), body["left"], body["right"])
            case "is":
                self._require_resource(body["left"])
                if "in" in body:
                    raise PolicyError("'is ... in' on the unknown resource is not translatable")
                return _TRUE if body["entity_type"] == self.resource_type else _FALSE
            case "has":
                return FieldExists(self._field_path(body["left"], body["attr"]))
            case "contains":
                return self._contains(body["left"], body["right"])
            case "containsAny":
                field = self._field(body["left"])
                return FieldContainsAny(field, self._scalar_set(body["right"]))
            case "containsAll":
                field = self._field(body["left"])
                return _conj(FieldContains(field, v) for v in self._scalar_set(body["right"]))
            case _:
                msg = f"unsupported residual node {op!r}; denying"
                raise PolicyError(msg)

    def _equality(self, left: Any, right: Any) -> FilterNode:
        left_field, right_field = self._maybe_field(left), self._maybe_field(right)
        if left_field is not None and right_field is not None:
            raise PolicyError("comparison between two resource attributes is not translatable")
        if left_field is not None:
            return FieldEq(left_field, self._scalar(right))
        if right_field is not None:
            return FieldEq(right_field, self._scalar(left))
        return _TRUE if self._scalar(left) == self._scalar(right) else _FALSE

    def _compare(self, op: CompareOp, left: Any, right: Any) -> FilterNode:
        left_field = self._maybe_field(left)
        if left_field is not None:
            return FieldCompare(left_field, op, self._int(right))
        right_field = self._maybe_field(right)
        if right_field is not None:
            return FieldCompare(right_field, _COMPARE_SWAP[op], self._int(left))
        raise PolicyError("comparison without a resource attribute was not folded")

    def _contains(self, left: Any, right: Any) -> FilterNode:
        left_field = self._maybe_field(left)
        if left_field is not None:
            return FieldContains(left_field, self._scalar(right))
        # ``["a", "b"].contains(resource.x)`` is membership of a scalar field in a literal set.
        right_field = self._field(right)
        return _disj(FieldEq(right_field, v) for v in self._scalar_set(left))

    def _require_resource(self, expr: Any) -> None:
        op, body = _single(expr)
        if op != "unknown" or not isinstance(body, list) or body != [{"Value": "resource"}]:
            msg = f"residual refers to an unknown other than the resource: {op!r}"
            raise PolicyError(msg)

    def _maybe_field(self, expr: Any) -> str | None:
        op, body = _single(expr)
        if op == ".":
            return self._field_path(body["left"], body["attr"])
        if op == "unknown":
            raise PolicyError("the bare resource cannot be compared in a filter")
        return None

    def _field(self, expr: Any) -> str:
        field = self._maybe_field(expr)
        if field is None:
            raise PolicyError("expected a resource attribute")
        return field

    def _field_path(self, left: Any, attr: Any) -> str:
        if not isinstance(attr, str) or not attr or "." in attr:
            raise PolicyError("attribute names must be plain identifiers")
        op, body = _single(left)
        if op == "unknown":
            self._require_resource(left)
            return attr
        if op == ".":
            return f"{self._field_path(body['left'], body['attr'])}.{attr}"
        msg = f"attribute access on {op!r} is not translatable"
        raise PolicyError(msg)

    def _scalar(self, expr: Any) -> Scalar:
        op, body = _single(expr)
        if op == "Value" and isinstance(body, str | int | bool):
            return body
        msg = f"expected a literal value, got {op!r}"
        raise PolicyError(msg)

    def _int(self, expr: Any) -> int:
        value = self._scalar(expr)
        if isinstance(value, bool) or not isinstance(value, int):
            raise PolicyError("integer comparison against a non-integer")
        return value

    def _scalar_set(self, expr: Any) -> tuple[Scalar, ...]:
        op, body = _single(expr)
        if op == "Set" and isinstance(body, list):
            return tuple(self._scalar(item) for item in body)
        if op == "Value" and isinstance(body, list):
            return tuple(self._scalar({"Value": item}) for item in body)
        msg = f"expected a literal set, got {op!r}"
        raise PolicyError(msg)


def _single(expr: Any) -> tuple[str, Any]:
    # ``dict`` first: cedarpy hands back plain dicts, and the ABC check costs ~3 us a node.
    if not isinstance(expr, dict | Mapping) or len(expr) != 1:
        raise PolicyError("malformed residual expression")
    (op,) = expr  # the one key, without building an items view per node
    if not isinstance(op, str):
        raise PolicyError("malformed residual expression")
    return op, expr[op]


def _cannot_apply(kind: Any, body: Any) -> bool:
    # ``is`` not ``==``: ``{"Value": 0} == {"Value": False}`` in Python, and a non-boolean
    # condition must reach the translator (which refuses it), never silently drop a forbid.
    if not isinstance(body, Mapping) or len(body) != 1 or "Value" not in body:
        return False
    value = body["Value"]
    return (kind == "when" and value is False) or (kind == "unless" and value is True)


def _policy_condition(policy: Mapping[str, Any], translator: _Translator) -> FilterNode:
    for scope in ("principal", "action"):
        if policy.get(scope, {}).get("op") != "All":
            msg = f"residual left the {scope} scope unresolved"
            raise PolicyError(msg)
    resource_scope = policy.get("resource", {})
    parts: list[FilterNode] = []
    scope_op = resource_scope.get("op")
    if scope_op == "is" and "in" not in resource_scope:
        if resource_scope.get("entity_type") != translator.resource_type:
            return _FALSE
    elif scope_op != "All":
        msg = f"resource scope {scope_op!r} is not translatable"
        raise PolicyError(msg)
    for condition in policy.get("conditions", []):
        kind, body = condition["kind"], condition["body"]
        if _cannot_apply(kind, body):
            # Fast path: partial evaluation already decided this policy cannot apply (every
            # policy of another action or role arrives as ``when { false }``).
            return _FALSE
        body = translator.boolean(body)
        if kind == "when":
            parts.append(body)
        elif kind == "unless":
            parts.append(_neg(body))
        else:
            msg = f"unknown condition kind {kind!r}"
            raise PolicyError(msg)
    return _conj(parts)


def residuals_to_filter(
    residuals: Mapping[str, Any], *, resource_type: str
) -> tuple[FilterNode, tuple[str, ...]]:
    """Combine residual policies into one filter: any permit holds and no forbid holds.

    Returns the simplified filter and the ids of the policies that contributed to it.

    Raises:
        PolicyError: on any node outside the closed set (the caller must deny).
    """
    translator = _Translator(resource_type)
    permits: list[FilterNode] = []
    forbids: list[FilterNode] = []
    contributing: list[str] = []
    try:
        for policy_id, policy in sorted(residuals.items()):
            node = _policy_condition(policy, translator)
            if node == _FALSE:
                continue
            contributing.append(policy.get("annotations", {}).get("id", policy_id))
            effect = policy.get("effect")
            if effect == "permit":
                permits.append(node)
            elif effect == "forbid":
                forbids.append(node)
            else:
                msg = f"unknown policy effect {effect!r}"
                raise PolicyError(msg)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise PolicyError("malformed residual policy") from exc
    combined = _conj((_disj(permits), _neg(_disj(forbids))))
    return combined, tuple(contributing)
