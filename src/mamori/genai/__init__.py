"""GenAI data authorization: the model never decides who may see what.

The verified end user travels out of band as a :class:`TrustedContext`, re-checked (``exp``,
``nbf``, revocation) on every use; the :class:`ToolGateway` authorizes every tool call and
resource id; :class:`AuthorizedRetriever` pushes the policy's residual filter into the vector
query and re-checks every hit; :class:`AuthorizedAggregate` counts over the authorized set only;
results are projected by data classification before the model sees them. Revocations and each
conversation's taint live in the store (:class:`ConversationStore`), shared by every process.
"""

from __future__ import annotations

from mamori.genai.aggregate import AuthorizedAggregate, evaluate
from mamori.genai.authorizer import Authorizer, LruCache
from mamori.genai.compile import SetColumn, to_qdrant, to_sql
from mamori.genai.context import ContextFactory, Domain, TrustedContext
from mamori.genai.gateway import (
    DENIED_MESSAGE,
    EXPIRED_MESSAGE,
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
from mamori.genai.state import ConversationStore, Liveness
from mamori.genai.statuslist import StatusListSource, StatusReference

__all__ = [
    "DENIED_MESSAGE",
    "EXPIRED_MESSAGE",
    "RESERVED_KEYS",
    "AclSchema",
    "AuthorizedAggregate",
    "AuthorizedRetriever",
    "Authorizer",
    "ClassificationSchema",
    "ContextFactory",
    "ConversationStore",
    "Domain",
    "Hit",
    "ListMode",
    "Liveness",
    "LruCache",
    "ModelCard",
    "Projection",
    "ResourceResolver",
    "Session",
    "SetColumn",
    "SinkSpec",
    "SourceDocument",
    "StatusListSource",
    "StatusReference",
    "ToolGateway",
    "ToolResult",
    "TrustedContext",
    "TrustedIngestor",
    "authorize_model",
    "evaluate",
    "lint_schema_fields",
    "point_id",
    "prefix_fields",
    "project",
    "strip_reserved",
    "to_qdrant",
    "to_sql",
]
