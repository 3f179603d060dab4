"""Trusted ingestion: ACL metadata comes only from the source system's connector.

Uploader-writable metadata (sidecars, form fields) and the document body are untrusted: any
reserved ACL key found there is stripped and reported, never used. The ACL itself must match the
declared :class:`AclSchema` exactly, or the document is refused (a document without a valid ACL
is never indexed, so it can never be retrieved unfiltered).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qdrant_client import QdrantClient, models

from mamori.errors import ConfigError, StoreError
from mamori.genai.edge import EdgeStore

__all__ = [
    "RESERVED_KEYS",
    "AclSchema",
    "SourceDocument",
    "TrustedIngestor",
    "point_id",
    "strip_reserved",
]

#: Keys that carry authorization meaning anywhere in a payload; only the connector sets them.
RESERVED_KEYS: frozenset[str] = frozenset(
    {
        "acl",
        "tenant",
        "tenant_id",
        "patient_id",
        "classification",
        "care_team",
        "owner",
        "principal",
        "role",
        "roles",
        "allowed_users",
        "allowed_groups",
        "visibility",
    }
)
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)
_KEY_LINE = re.compile(r"^\s*([A-Za-z_][\w\-]*)\s*:")


def _normal(key: str) -> str:
    return key.strip().lower().replace("-", "_")


def strip_reserved(value: Any) -> tuple[Any, tuple[str, ...]]:
    """Remove reserved keys at any depth; return the clean value and the stripped paths."""
    stripped: list[str] = []

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, Mapping):
            kept: dict[str, Any] = {}
            for key, child in node.items():
                where = f"{path}.{key}" if path else str(key)
                if _normal(str(key)) in RESERVED_KEYS:
                    stripped.append(where)
                    continue
                kept[str(key)] = walk(child, where)
            return kept
        if isinstance(node, list):
            return [walk(child, f"{path}[]") for child in node]
        return node

    return walk(value, ""), tuple(stripped)


def _strip_front_matter(text: str) -> tuple[str, tuple[str, ...]]:
    match = _FRONT_MATTER.match(text)
    if match is None:
        return text, ()
    lines, dropped = [], []
    for line in match.group(1).splitlines():
        key = _KEY_LINE.match(line)
        if key and _normal(key.group(1)) in RESERVED_KEYS:
            dropped.append(f"front-matter.{key.group(1)}")
        else:
            lines.append(line)
    body = text[match.end() :]
    head = "---\n" + "\n".join(lines) + "\n---\n" if lines else ""
    return head + body, tuple(dropped)


@dataclass(frozen=True, slots=True)
class AclSchema:
    """The ACL attributes every document must carry, with their types (``str`` or ``list``)."""

    fields: Mapping[str, type]

    def validate(self, acl: Mapping[str, Any]) -> dict[str, Any]:
        """Return the ACL in payload form or raise :class:`ConfigError`."""
        if set(acl) != set(self.fields):
            msg = f"ACL keys {sorted(acl)} do not match {sorted(self.fields)}"
            raise ConfigError(msg)
        clean: dict[str, Any] = {}
        for name, kind in self.fields.items():
            value = acl[name]
            if kind is list:
                if not isinstance(value, list | tuple | set | frozenset) or not all(
                    isinstance(v, str) for v in value
                ):
                    msg = f"ACL field {name!r} must be a list of strings"
                    raise ConfigError(msg)
                clean[name] = sorted(value)
            elif not isinstance(value, kind) or value == "":
                msg = f"ACL field {name!r} must be a non-empty {kind.__name__}"
                raise ConfigError(msg)
            else:
                clean[name] = value
        return clean


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """One document from the source system; ``acl`` is set by the trusted connector only."""

    doc_id: str
    text: str
    acl: Mapping[str, Any]
    metadata: Mapping[str, Any] = field(default_factory=dict)


def point_id(doc_id: str) -> str:
    """Deterministic Qdrant point id for a document id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mamori-doc:{doc_id}"))


class TrustedIngestor:
    """Embeds and upserts documents with ACL payloads under ``acl``."""

    def __init__(
        self,
        client: QdrantClient | EdgeStore,
        collection: str,
        embed: Callable[[Sequence[str]], Sequence[Sequence[float]]],
        acl_schema: AclSchema,
    ) -> None:
        """Bind the vector store, the embedding function and the ACL schema."""
        self._client = client
        self._collection = collection
        self._embed = embed
        self._schema = acl_schema
        self.stripped: list[tuple[str, str]] = []

    def ensure_collection(self, dimension: int) -> None:
        """Create the collection and keyword indexes on the ACL fields if missing.

        An :class:`EdgeStore` is created with its dimension; here it gets the payload indexes
        its filtered search uses (keyword indexes on every ACL field).
        """
        if isinstance(self._client, EdgeStore):
            self._client.index_keywords(f"acl.{name}" for name in self._schema.fields)
            return
        try:
            if not self._client.collection_exists(self._collection):
                self._client.create_collection(
                    self._collection,
                    vectors_config=models.VectorParams(
                        size=dimension, distance=models.Distance.COSINE
                    ),
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise StoreError("cannot create the vector collection") from exc

    def ingest(self, documents: Iterable[SourceDocument]) -> int:
        """Validate, sanitise, embed and upsert; return the number of documents indexed."""
        prepared: list[tuple[str, str, dict[str, Any]]] = []
        for doc in documents:
            acl = self._schema.validate(doc.acl)
            metadata, meta_dropped = strip_reserved(dict(doc.metadata))
            text, text_dropped = _strip_front_matter(doc.text)
            self.stripped.extend((doc.doc_id, path) for path in (*meta_dropped, *text_dropped))
            payload = {"doc_id": doc.doc_id, "text": text, "meta": metadata, "acl": acl}
            prepared.append((doc.doc_id, text, payload))
        if not prepared:
            return 0
        vectors = self._embed([text for _, text, _ in prepared])
        if isinstance(self._client, EdgeStore):
            self._client.upsert(
                [
                    (point_id(doc_id), vec, payload)
                    for (doc_id, _, payload), vec in zip(prepared, vectors, strict=True)
                ]
            )
            return len(prepared)
        points = [
            models.PointStruct(id=point_id(doc_id), vector=list(vec), payload=payload)
            for (doc_id, _, payload), vec in zip(prepared, vectors, strict=True)
        ]
        try:
            self._client.upsert(self._collection, points=points, wait=True)
        except (ValueError, RuntimeError, OSError) as exc:
            raise StoreError("vector store upsert failed") from exc
        return len(points)
