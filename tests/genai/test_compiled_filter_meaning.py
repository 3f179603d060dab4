"""What a compiled filter *means*, checked without the per-hit re-check that could hide a leak.

The retriever re-checks every hit with Cedar, so a compiler that drops a deny condition (say,
``Not(Or(a, b))`` compiled to ``must_not=[a]``) still returns only authorized hits and every
end-to-end test passes. Here each compiled filter is run on its own, in the engine that will
run it (Qdrant local mode, Qdrant Edge, SQLite through SQLAlchemy), over random documents
and random policy sets, and the set it selects must *equal* the set Cedar authorizes item by item: a
looser filter leaks, a stricter one loses recall.
"""

from __future__ import annotations

import uuid

from hypothesis import assume, given
from hypothesis import strategies as st
from qdrant_client import QdrantClient, models
from sqlalchemy import Column, MetaData, String, Table, create_engine, insert, select

from mamori.audit import AuditChain, MemorySink
from mamori.errors import IdentityError
from mamori.genai import (
    Authorizer,
    ContextFactory,
    ConversationStore,
    SetColumn,
    to_qdrant,
    to_sql,
)
from mamori.genai.edge import EdgeStore, to_edge
from mamori.genai.hospital import HOSPITAL_DOMAIN
from mamori.genai.retrieval import prefix_fields
from mamori.policy import Const, Entity, EntityUid, PolicyEngine, Request

from .test_policy_properties import _SCHEMA_TEXT, ACLS, PROPERTY, USERS, policy_sets

# One store for every example: nothing here revokes, and a store per example would cost more
# than the property's own work.
_STATE = ConversationStore.ephemeral()


def _context(issuer, verifier, policies, user):
    engine = PolicyEngine(policies=policies, schema=_SCHEMA_TEXT)
    authorizer = Authorizer(engine, _STATE, AuditChain(MemorySink()))
    subject, roles, tenant, pid = user
    claims = {"patient_id": pid} if pid else {}
    try:
        ctx = ContextFactory(verifier, HOSPITAL_DOMAIN, _STATE).from_token(
            issuer.mint(subject, roles=roles, tenant=tenant, claims=claims)
        )
    except IdentityError:
        # The claim mapping refuses some role sets (exclusive roles): no context, no filter.
        assume(False)  # noqa: FBT003 -- hypothesis API
    return engine, authorizer, ctx


def _authorized(engine, ctx, acls):
    """Cedar's own answer for each document (the oracle)."""
    allowed = set()
    for i, acl in enumerate(acls):
        entity = Entity(
            EntityUid("Hospital::Document", f"d{i}"),
            {**acl, "care_team": frozenset(acl["care_team"])},
        )
        request = Request(ctx.uid, ctx.domain.action("read_document"), entity.uid)
        if engine.decide(request, [*ctx.entities(), entity]).allowed:
            allowed.add(f"d{i}")
    return allowed


def _qdrant_selects(node, acls):
    client = QdrantClient(":memory:")
    client.create_collection("docs", vectors_config=models.VectorParams(size=2, distance="Dot"))
    client.upsert(
        "docs",
        [
            models.PointStruct(
                id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"d{i}")),
                vector=[1.0, 0.0],
                payload={"doc_id": f"d{i}", "acl": acl},
            )
            for i, acl in enumerate(acls)
        ],
    )
    points, _ = client.scroll(
        "docs", scroll_filter=to_qdrant(prefix_fields(node, "acl.")), limit=len(acls) + 1
    )
    return {p.payload["doc_id"] for p in points if p.payload}


def _edge_selects(node, acls, directory):
    store = EdgeStore.create(directory / uuid.uuid4().hex, 2)
    try:
        store.index_keywords(f"acl.{f}" for f in ("tenant", "patient_id", "classification"))
        store.index_keywords(["acl.care_team"])
        store.upsert(
            [
                (
                    str(uuid.uuid5(uuid.NAMESPACE_URL, f"d{i}")),
                    [1.0, 0.0],
                    {"doc_id": f"d{i}", "acl": acl},
                )
                for i, acl in enumerate(acls)
            ]
        )
        payloads = store.scroll(to_edge(prefix_fields(node, "acl.")), limit=len(acls) + 1)
    finally:
        store.close()
    return {p["doc_id"] for p in payloads}


def _sql_selects(node, acls):
    meta = MetaData()
    docs = Table(
        "docs",
        meta,
        Column("id", String, primary_key=True),
        Column("tenant", String),
        Column("patient_id", String),
        Column("classification", String),
    )
    team = Table("team", meta, Column("doc_id", String), Column("user_id", String))
    engine = create_engine("sqlite://")
    meta.create_all(engine)
    with engine.begin() as conn:
        for i, acl in enumerate(acls):
            conn.execute(
                insert(docs).values(
                    id=f"d{i}",
                    tenant=acl["tenant"],
                    patient_id=acl["patient_id"],
                    classification=acl["classification"],
                )
            )
            for member in acl["care_team"]:
                conn.execute(insert(team).values(doc_id=f"d{i}", user_id=member))
    columns = {
        "tenant": docs.c.tenant,
        "patient_id": docs.c.patient_id,
        "classification": docs.c.classification,
        "care_team": SetColumn(team, "doc_id", "user_id", docs.c.id),
    }
    with engine.connect() as conn:
        return set(conn.scalars(select(docs.c.id).where(to_sql(node, columns))))


@PROPERTY
@given(
    policies=policy_sets(allow_untranslatable=False),
    acls=st.lists(ACLS, min_size=1, max_size=12),
    user=USERS,
)
def test_each_compiled_filter_selects_exactly_what_cedar_authorizes(  # noqa: PLR0917 -- hypothesis draws
    issuer, verifier, tmp_path_factory, policies, acls, user
):
    engine, authorizer, ctx = _context(issuer, verifier, policies, user)
    node = authorizer.resource_filter(ctx, "read_document", "Document")
    authorized = _authorized(engine, ctx, acls)
    if isinstance(node, Const):
        # A constant never reaches an engine: False answers "nothing" without a query, and
        # True is refused by the compilers. Its meaning must still be Cedar's.
        expected = {f"d{i}" for i in range(len(acls))} if node.value else set()
        assert authorized == expected
        return
    assert _qdrant_selects(node, acls) == authorized
    assert _sql_selects(node, acls) == authorized
    assert _edge_selects(node, acls, tmp_path_factory.getbasetemp()) == authorized
