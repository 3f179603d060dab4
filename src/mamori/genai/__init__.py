"""GenAI data authorization: the model never decides who may see what.

The verified end user travels out of band as a :class:`TrustedContext`; the
:class:`ToolGateway` authorizes every tool call and resource id; :class:`AuthorizedRetriever`
pushes the policy's residual filter into the vector query and re-checks every hit; results are
projected by data classification before the model sees them.
"""

from __future__ import annotations

from mamori.genai.authorizer import Authorizer, LruCache
from mamori.genai.compile import SetColumn, to_qdrant, to_sql
from mamori.genai.context import ContextFactory, Domain, Revocations, TrustedContext
from mamori.genai.gateway import (
    DENIED_MESSAGE,
    ListMode,
    ResourceResolver,
    Session,
    SinkSpec,
    ToolGateway,
    ToolResult,
    lint_schema_fields,
)
from mamori.genai.ingestion import (
    RESERVED_KEYS,
    AclSchema,
    SourceDocument,
    TrustedIngestor,
    point_id,
    strip_reserved,
)
from mamori.genai.lineage import ModelCard, authorize_model
from mamori.genai.projection import ClassificationSchema, Projection, project
from mamori.genai.retrieval import AuthorizedRetriever, Hit, prefix_fields

__all__ = [
    "DENIED_MESSAGE",
    "RESERVED_KEYS",
    "AclSchema",
    "AuthorizedRetriever",
    "Authorizer",
    "ClassificationSchema",
    "ContextFactory",
    "Domain",
    "Hit",
    "ListMode",
    "LruCache",
    "ModelCard",
    "Projection",
    "ResourceResolver",
    "Revocations",
    "Session",
    "SetColumn",
    "SinkSpec",
    "SourceDocument",
    "ToolGateway",
    "ToolResult",
    "TrustedContext",
    "TrustedIngestor",
    "authorize_model",
    "lint_schema_fields",
    "point_id",
    "prefix_fields",
    "project",
    "strip_reserved",
    "to_qdrant",
    "to_sql",
]
