"""Authorized retrieval: the policy's residual filter is pushed into the vector query.

The order is fixed: build the filter from the verified context (an empty allow-set returns
``[]`` without querying), compile it into Qdrant's typed filter, query, then re-check every hit
with a full authorization call. Any policy, compile or vector-store failure yields no items.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mamori.errors import PolicyError, StoreError
from mamori.genai.compile import to_qdrant
from mamori.policy import (
    And,
    Const,
    Entity,
    EntityUid,
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
    from qdrant_client import QdrantClient

    from mamori.genai.authorizer import Authorizer
    from mamori.genai.context import TrustedContext

__all__ = ["AuthorizedRetriever", "Hit", "prefix_fields"]


@dataclass(frozen=True, slots=True)
class Hit:
    """One authorized retrieval result."""

    doc_id: str
    score: float
    text: str
    acl: Mapping[str, Any]


def prefix_fields(node: FilterNode, prefix: str) -> FilterNode:  # noqa: PLR0911 -- flat dispatch
    """Return ``node`` with every field renamed to ``prefix + field`` (ACL lives under ``acl.``)."""
    match node:
        case Const():
            return node
        case FieldEq(field=f, value=v):
            return FieldEq(prefix + f, v)
        case FieldContains(field=f, value=v):
            return FieldContains(prefix + f, v)
        case FieldContainsAny(field=f, values=vs):
            return FieldContainsAny(prefix + f, vs)
        case FieldExists(field=f):
            return FieldExists(prefix + f)
        case FieldCompare(field=f, op=op, value=v):
            return FieldCompare(prefix + f, op, v)
        case And(children=c):
            return And(tuple(prefix_fields(x, prefix) for x in c))
        case Or(children=c):
            return Or(tuple(prefix_fields(x, prefix) for x in c))
        case Not(child=c):
            return Not(prefix_fields(c, prefix))
    raise PolicyError("unknown filter node")  # pragma: no cover - the match is exhaustive


class AuthorizedRetriever:
    """Filtered vector search over documents ingested by :class:`TrustedIngestor`."""

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        authorizer: Authorizer,
        *,
        resource_type: str = "Document",
        action: str = "read_document",
    ) -> None:
        """Bind the store, the collection and the authorizer."""
        self._client = client
        self._collection = collection
        self._authorizer = authorizer
        self._resource_type = resource_type
        self._action = action
        self.last_filter: FilterNode | None = None

    def search(self, ctx: TrustedContext, vector: Sequence[float], *, limit: int = 5) -> list[Hit]:
        """Return at most ``limit`` hits that ``ctx`` may read.

        Raises:
            StoreError: the vector store failed; no partial or unfiltered result is returned.
        """
        node = simplify(self._authorizer.resource_filter(ctx, self._action, self._resource_type))
        self.last_filter = node
        if node == Const(value=False):
            return []
        try:
            query_filter = to_qdrant(prefix_fields(node, "acl."))
        except PolicyError:
            return []
        try:
            response = self._client.query_points(
                self._collection,
                query=list(vector),
                query_filter=query_filter,
                limit=limit,
                with_payload=True,
            )
        # NOTE: qdrant-client raises different types in local and server mode (ValueError,
        # UnexpectedResponse, grpc errors, httpx errors); all of them mean "no answer".
        except Exception as exc:
            raise StoreError("vector store query failed; returning nothing") from exc
        qualified = ctx.domain.entity_type(self._resource_type)
        hits: list[Hit] = []
        for point in response.points:
            payload = point.payload or {}
            acl = payload.get("acl")
            doc_id = payload.get("doc_id")
            if not isinstance(acl, Mapping) or not isinstance(doc_id, str):
                continue  # a point without a trusted ACL is never returned
            attrs = {k: frozenset(v) if isinstance(v, list) else v for k, v in acl.items()}
            entity = Entity(EntityUid(qualified, doc_id), attrs)
            if self._authorizer.check(ctx, self._action, entity).allowed:
                hits.append(Hit(doc_id, point.score, str(payload.get("text", "")), dict(acl)))
        return hits
