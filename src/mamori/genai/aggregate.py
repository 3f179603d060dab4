"""Aggregates over the authorized set only: counts and sums never see a forbidden row.

A "count patients with diabetes" tool that counts over every patient tells a doctor how many
patients outside their care team have diabetes, even when the count itself is labelled PHI and
only released to clinicians. :class:`AuthorizedAggregate` takes the policy's residual filter
for the caller (the same filter that authorized retrieval pushes into the vector store) and
applies it before anything is aggregated:

* :meth:`AuthorizedAggregate.sql_filter` compiles it into a SQL ``WHERE`` clause, so that the
  database counts only authorized rows (:meth:`AuthorizedAggregate.count_sql`);
* :meth:`AuthorizedAggregate.select` evaluates it over in-memory rows, with SQL's
  three-valued logic: a missing attribute or a value of the wrong type is *unknown*, and an
  unknown row is never included (Cedar would error on it; mamori leaves it out).

A filter that cannot be built or compiled is an empty authorized set: the aggregate is over
nothing, never over everything. The filter's decision is audited once, with its policy ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, assert_never

from sqlalchemy import and_, false, func, select

from mamori.errors import PolicyError
from mamori.genai.compile import SetColumn, to_sql
from mamori.policy import (
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
    simplify,
)

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Connection, FromClause

    from mamori.genai.authorizer import Authorizer
    from mamori.genai.context import TrustedContext

__all__ = ["AuthorizedAggregate", "evaluate"]

T = TypeVar("T")
_MISSING = object()


def _lookup(attrs: Mapping[str, Any], path: str) -> Any:
    node: Any = attrs
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _same(a: Any, b: Any) -> bool:
    # Cedar's 1 and true differ; Python's 1 == True does not.
    return type(a) is type(b) and a == b


def _member(value: Any, container: Any) -> bool | None:
    if not isinstance(container, frozenset | set | list | tuple):
        return None
    return any(_same(item, value) for item in container)


def evaluate(node: FilterNode, attrs: Mapping[str, Any]) -> bool | None:  # noqa: C901, PLR0911, PLR0912 -- one flat dispatch over the closed filter-node set
    """Evaluate a filter on one resource's attributes: ``True``, ``False`` or ``None`` (unknown).

    ``None`` comes from a missing attribute or a type mismatch and propagates like SQL's
    ``NULL`` (``NOT NULL`` is ``NULL``); callers include a row only on ``True``.
    """
    match node:
        case Const(value=value):
            return value
        case FieldEq(field=field, value=value):
            actual = _lookup(attrs, field)
            if actual is _MISSING or type(actual) is not type(value):
                return None
            return bool(actual == value)
        case FieldContains(field=field, value=value):
            return _member(value, _lookup(attrs, field))
        case FieldContainsAny(field=field, values=values):
            container = _lookup(attrs, field)
            found = [_member(v, container) for v in values]
            if any(f is None for f in found):
                return None
            return any(found)
        case FieldExists(field=field):
            return _lookup(attrs, field) is not _MISSING
        case FieldCompare(field=field, op=op, value=value):
            actual = _lookup(attrs, field)
            if isinstance(actual, bool) or not isinstance(actual, int):
                return None
            return _compare(op, actual, value)
        case And(children=children):
            results = [evaluate(c, attrs) for c in children]
            if any(r is False for r in results):
                return False
            return None if any(r is None for r in results) else True
        case Or(children=children):
            results = [evaluate(c, attrs) for c in children]
            if any(r is True for r in results):
                return True
            return None if any(r is None for r in results) else False
        case Not(child=child):
            result = evaluate(child, attrs)
            return None if result is None else not result
        case _:
            assert_never(node)


def _compare(op: CompareOp, left: int, right: int) -> bool:
    match op:
        case CompareOp.LT:
            return left < right
        case CompareOp.LE:
            return left <= right
        case CompareOp.GT:
            return left > right
        case CompareOp.GE:
            return left >= right
        case _:
            assert_never(op)


class AuthorizedAggregate:
    """Aggregates over the resources of one type that the caller may ``action``."""

    def __init__(self, authorizer: Authorizer, *, action: str, resource_type: str) -> None:
        """Bind the authorizer, the action (e.g. ``read_patient``) and the resource type."""
        self._authorizer = authorizer
        self._action = action
        self._resource_type = resource_type

    def authorized_filter(self, ctx: TrustedContext) -> FilterNode:
        """The caller's simplified filter; ``Const(False)`` when nothing is authorized."""
        return simplify(self._authorizer.resource_filter(ctx, self._action, self._resource_type))

    def select(
        self,
        ctx: TrustedContext,
        rows: Iterable[T],
        attributes: Callable[[T], Mapping[str, Any]],
    ) -> list[T]:
        """The ``rows`` whose trusted ``attributes`` the filter accepts, in their order."""
        node = self.authorized_filter(ctx)
        if node == Const(value=False):
            return []
        return [row for row in rows if evaluate(node, attributes(row)) is True]

    def count(
        self,
        ctx: TrustedContext,
        rows: Iterable[T],
        attributes: Callable[[T], Mapping[str, Any]],
        where: Callable[[T], bool] | None = None,
    ) -> int:
        """How many authorized rows satisfy ``where`` (all authorized rows without it)."""
        return sum(1 for row in self.select(ctx, rows, attributes) if where is None or where(row))

    def sql_filter(
        self, ctx: TrustedContext, columns: Mapping[str, ColumnElement[Any] | SetColumn]
    ) -> ColumnElement[bool]:
        """The filter as a SQL condition with bound parameters; ``false()`` if it cannot be."""
        node = self.authorized_filter(ctx)
        try:
            return to_sql(node, columns)
        except PolicyError:
            # A residual that does not map onto these columns authorizes nothing.
            return false()

    def count_sql(
        self,
        ctx: TrustedContext,
        conn: Connection,
        table: FromClause,
        columns: Mapping[str, ColumnElement[Any] | SetColumn],
        *,
        where: ColumnElement[bool] | None = None,
    ) -> int:
        """``SELECT count(*) FROM table WHERE <authorized> AND <where>``, run on ``conn``."""
        condition = self.sql_filter(ctx, columns)
        if where is not None:
            condition = and_(condition, where)
        query = select(func.count()).select_from(table).where(condition)
        return int(conn.execute(query).scalar_one())
