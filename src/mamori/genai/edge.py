"""Qdrant Edge: the Qdrant engine in process, with payload indexes, as the embedded store.

Qdrant's client "local mode" evaluates filters in Python point by point (about 2 s per query at
100 k vectors); Edge runs the server's own segment code (HNSW, payload indexes, filtered
search) inside this process. The filter model is the server's, so :func:`to_edge` mirrors
:func:`mamori.genai.compile.to_qdrant` node for node, and the compiled-filter meaning tests
run it against Cedar the same way.

:class:`EdgeStore` is the small surface :class:`~mamori.genai.AuthorizedRetriever` and
:class:`~mamori.genai.TrustedIngestor` need (create, index, upsert, filtered query, scroll).
The native engine raises a bare ``Exception`` for its errors (a wrong vector dimension, a
missing shard, ...); every method turns any of them into :class:`StoreError`, so a caller
never gets a partial or unfiltered answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, assert_never

import qdrant_edge as qe

from mamori.errors import PolicyError, StoreError
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

__all__ = ["EdgeHit", "EdgeStore", "to_edge"]

_EXACT_FLOAT: Final = 2**53
"""Edge ranges are floats: a larger integer bound would compare inexactly, so it is refused."""


def _condition(node: FilterNode) -> Any:  # noqa: C901, PLR0911 -- flat dispatch, closed set
    match node:
        case Const():
            raise PolicyError("constant inside a filter; refusing to compile")
        case FieldEq(field=field, value=value) | FieldContains(field=field, value=value):
            return qe.FieldCondition(key=field, match=qe.MatchValue(value))
        case FieldContainsAny(field=field, values=values):
            if not values:
                raise PolicyError("empty set in containsAny")
            return qe.Filter(
                should=[qe.FieldCondition(key=field, match=qe.MatchValue(v)) for v in values]
            )
        case FieldExists(field=field):
            return qe.Filter(must_not=[qe.IsNullCondition(field), qe.IsEmptyCondition(field)])
        case FieldCompare(field=field, op=op, value=value):
            if abs(value) > _EXACT_FLOAT:
                msg = f"integer bound {value} is not exact as a float; refusing to compile"
                raise PolicyError(msg)
            return qe.FieldCondition(key=field, range=_range(op, float(value)))
        case And(children=children):
            return qe.Filter(must=[_condition(c) for c in children])
        case Or(children=children):
            return qe.Filter(should=[_condition(c) for c in children])
        case Not(child=child):
            return qe.Filter(must_not=[_condition(child)])
        case _:
            assert_never(node)


def _range(op: CompareOp, value: float) -> qe.RangeFloat:
    match op:
        case CompareOp.LT:
            return qe.RangeFloat(lt=value)
        case CompareOp.LE:
            return qe.RangeFloat(lte=value)
        case CompareOp.GT:
            return qe.RangeFloat(gt=value)
        case CompareOp.GE:
            return qe.RangeFloat(gte=value)
        case _:
            assert_never(op)


def to_edge(node: FilterNode) -> qe.Filter:
    """Compile a simplified, non-constant filter into a Qdrant Edge ``Filter``.

    Constants raise, as in :func:`~mamori.genai.compile.to_qdrant`: ``False`` must answer
    "nothing" without a query and ``True`` must never become an unconstrained one.
    """
    if isinstance(node, Const):
        raise PolicyError("refusing to compile a constant filter into a query")
    condition = _condition(node)
    if isinstance(condition, qe.Filter):
        return condition
    return qe.Filter(must=[condition])


@dataclass(frozen=True, slots=True)
class EdgeHit:
    """One point returned by the engine."""

    score: float
    payload: Mapping[str, Any]


class EdgeStore:
    """One Edge shard on local disk (cosine distance, one unnamed dense vector)."""

    def __init__(self, shard: qe.EdgeShard) -> None:
        """Wrap an open shard; use :meth:`create` or :meth:`open`."""
        self._shard = shard

    @classmethod
    def create(cls, path: Path, dimension: int) -> EdgeStore:
        """Create a new shard at ``path`` (which must not hold one yet)."""
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(dimension, qe.Distance.Cosine))
        try:
            return cls(qe.EdgeShard.create(str(path), config))
        except Exception as exc:
            msg = f"cannot create the Edge shard at {path}"
            raise StoreError(msg) from exc

    @classmethod
    def open(cls, path: Path) -> EdgeStore:
        """Open the shard at ``path``."""
        try:
            return cls(qe.EdgeShard.load(str(path)))
        except Exception as exc:
            msg = f"cannot open the Edge shard at {path}"
            raise StoreError(msg) from exc

    def index_keywords(self, fields: Iterable[str]) -> None:
        """Create keyword payload indexes (the ACL fields every filter names)."""
        for name in fields:
            self._apply(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))

    def upsert(self, points: Sequence[tuple[str, Sequence[float], Mapping[str, Any]]]) -> None:
        """Insert or replace ``(point id, vector, payload)`` triples."""
        batch = [qe.Point(pid, list(vec), dict(payload)) for pid, vec, payload in points]
        self._apply(qe.UpdateOperation.upsert_points(batch))

    def optimize(self) -> None:
        """Build the HNSW graph and indexes now rather than on the first queries."""
        try:
            self._shard.optimize()
        except Exception as exc:
            raise StoreError("Edge shard optimisation failed") from exc

    def query(
        self,
        vector: Sequence[float],
        query_filter: qe.Filter,
        *,
        limit: int,
        exact: bool = False,
    ) -> list[EdgeHit]:
        """The ``limit`` nearest points that pass ``query_filter`` (with payloads).

        Raises:
            StoreError: the engine failed; no partial result is returned.
        """
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(list(vector)),
            filter=query_filter,
            with_payload=True,
            params=qe.SearchParams(exact=exact),
        )
        try:
            points = self._shard.query(request)
        except Exception as exc:
            raise StoreError("Edge query failed; returning nothing") from exc
        return [EdgeHit(p.score, p.payload or {}) for p in points]

    def scroll(self, query_filter: qe.Filter, *, limit: int) -> list[Mapping[str, Any]]:
        """The payloads of up to ``limit`` points that pass ``query_filter``."""
        try:
            records, _ = self._shard.scroll(
                qe.ScrollRequest(limit=limit, filter=query_filter, with_payload=True)
            )
        except Exception as exc:
            raise StoreError("Edge scroll failed") from exc
        return [r.payload or {} for r in records]

    def close(self) -> None:
        """Flush and release the shard."""
        self._shard.close()

    def _apply(self, operation: qe.UpdateOperation) -> None:
        try:
            self._shard.update(operation)
        except Exception as exc:
            raise StoreError("Edge update failed") from exc
