"""Compile the typed filter AST into Qdrant filters and SQLAlchemy expressions.

Both compilers build typed objects (``models.FieldCondition``, bound SQL parameters); no filter
text is ever assembled from strings. Unknown fields raise :class:`PolicyError`; callers deny.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, assert_never

from qdrant_client import models
from sqlalchemy import and_, exists, false, not_, or_, select, true

from mamori.errors import PolicyError
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
)

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Table

__all__ = ["SetColumn", "to_qdrant", "to_sql"]


def _qdrant_condition(node: FilterNode) -> models.Condition:  # noqa: C901, PLR0911 -- one flat dispatch over the closed filter-node set reads best
    match node:
        case Const():
            # Constants are folded away by ``simplify``; a stray one means a translator bug.
            raise PolicyError("constant inside a filter; refusing to compile")
        case FieldEq(field=field, value=value) | FieldContains(field=field, value=value):
            # Qdrant matches an array payload if any element equals the value.
            return models.FieldCondition(key=field, match=models.MatchValue(value=value))
        case FieldContainsAny(field=field, values=values):
            if not values:
                raise PolicyError("empty set in containsAny")
            if all(isinstance(v, str) for v in values):
                return models.FieldCondition(key=field, match=models.MatchAny(any=list(values)))
            return models.Filter(
                should=[
                    models.FieldCondition(key=field, match=models.MatchValue(value=v))
                    for v in values
                ]
            )
        case FieldExists(field=field):
            return models.Filter(
                must_not=[
                    models.IsNullCondition(is_null=models.PayloadField(key=field)),
                    models.IsEmptyCondition(is_empty=models.PayloadField(key=field)),
                ]
            )
        case FieldCompare(field=field, op=op, value=value):
            return models.FieldCondition(key=field, range=_range(op, value))
        case And(children=children):
            return models.Filter(must=[_qdrant_condition(c) for c in children])
        case Or(children=children):
            return models.Filter(should=[_qdrant_condition(c) for c in children])
        case Not(child=child):
            return models.Filter(must_not=[_qdrant_condition(child)])
        case _:
            assert_never(node)


def _range(op: CompareOp, value: int) -> models.Range:
    match op:
        case CompareOp.LT:
            return models.Range(lt=value)
        case CompareOp.LE:
            return models.Range(lte=value)
        case CompareOp.GT:
            return models.Range(gt=value)
        case CompareOp.GE:
            return models.Range(gte=value)
        case _:
            assert_never(op)


def to_qdrant(node: FilterNode) -> models.Filter:
    """Compile a simplified, non-constant filter into a Qdrant ``Filter``.

    ``Const(False)`` raises: an empty allow-set must short-circuit to an empty result before
    any query is sent. ``Const(True)`` also raises, so that no code path can send an
    unconstrained query by accident; use an explicit tenant condition instead.
    """
    if isinstance(node, Const):
        raise PolicyError("refusing to compile a constant filter into a query")
    condition = _qdrant_condition(node)
    if isinstance(condition, models.Filter):
        return condition
    return models.Filter(must=[condition])


@dataclass(frozen=True, slots=True)
class SetColumn:
    """A set-valued attribute stored in a side table: ``(owner_fk, value)`` rows."""

    table: Table
    owner_column: str
    value_column: str
    owner_key: ColumnElement[Any]


def _sql_scalar(columns: Mapping[str, Any], field: str) -> ColumnElement[Any]:
    column = columns.get(field)
    if column is None or isinstance(column, SetColumn):
        msg = f"no scalar column mapped for {field!r}"
        raise PolicyError(msg)
    result: ColumnElement[Any] = column
    return result


def _sql_set(columns: Mapping[str, Any], field: str) -> SetColumn:
    column = columns.get(field)
    if not isinstance(column, SetColumn):
        msg = f"no set column mapped for {field!r}"
        raise PolicyError(msg)
    return column


def to_sql(  # noqa: C901, PLR0911, PLR0912 -- one flat dispatch over the closed filter-node set reads best
    node: FilterNode, columns: Mapping[str, ColumnElement[Any] | SetColumn]
) -> ColumnElement[bool]:
    """Compile a filter into a SQLAlchemy boolean expression with bound parameters."""
    match node:
        case Const(value=value):
            return true() if value else false()
        case FieldEq(field=field, value=value):
            return _sql_scalar(columns, field) == value
        case FieldContains(field=field, value=value):
            side = _sql_set(columns, field)
            return exists(
                select(side.table.c[side.owner_column]).where(
                    side.table.c[side.owner_column] == side.owner_key,
                    side.table.c[side.value_column] == value,
                )
            )
        case FieldContainsAny(field=field, values=values):
            side = _sql_set(columns, field)
            return exists(
                select(side.table.c[side.owner_column]).where(
                    side.table.c[side.owner_column] == side.owner_key,
                    side.table.c[side.value_column].in_(list(values)),
                )
            )
        case FieldExists(field=field):
            return _sql_scalar(columns, field).is_not(None)
        case FieldCompare(field=field, op=op, value=value):
            column = _sql_scalar(columns, field)
            match op:
                case CompareOp.LT:
                    return column < value
                case CompareOp.LE:
                    return column <= value
                case CompareOp.GT:
                    return column > value
                case CompareOp.GE:
                    return column >= value
                case _:
                    assert_never(op)
        case And(children=children):
            return and_(*(to_sql(c, columns) for c in children))
        case Or(children=children):
            return or_(*(to_sql(c, columns) for c in children))
        case Not(child=child):
            return not_(to_sql(child, columns))
        case _:
            assert_never(node)
