"""Authorized retrieval and trusted ingestion on Qdrant Edge, the in-process engine."""

from __future__ import annotations

import pytest

from mamori.errors import PolicyError, StoreError
from mamori.genai import AuthorizedRetriever, TrustedIngestor
from mamori.genai.edge import EdgeStore, to_edge
from mamori.genai.hospital import DOCUMENT_ACL
from mamori.policy import CompareOp, Const, FieldCompare, FieldEq

from .conftest import DIM, bag_of_words

QUERIES = ["clinical note", "call back to reschedule", "prescribed follow-up", "patient p1"]


@pytest.fixture
def edge(tmp_path, hospital):
    store = EdgeStore.create(tmp_path / "shard", DIM)
    ingestor = TrustedIngestor(store, "notes", bag_of_words, DOCUMENT_ACL)
    ingestor.ensure_collection(DIM)
    assert ingestor.ingest(hospital.data.documents) == len(hospital.data.documents)
    yield store
    store.close()


def _ids(retriever, session, text):
    [vector] = bag_of_words([text])
    return [h.doc_id for h in retriever.search(session.ctx, vector, limit=20)]


@pytest.mark.parametrize("who", ["doctor", "receptionist", "patient"])
def test_edge_returns_the_same_authorized_hits_as_local_mode(request, who, edge, hospital):
    session = request.getfixturevalue(who)
    on_edge = AuthorizedRetriever(edge, "", hospital.authorizer)
    for text in QUERIES:
        assert set(_ids(on_edge, session, text)) == set(_ids(hospital.retriever, session, text))
    # The compiled filter alone kept every forbidden document out: the re-check dropped none.
    assert on_edge.recheck_dropped == 0


def test_the_doctor_sees_some_but_not_all_documents_on_edge(doctor, edge, hospital):
    on_edge = AuthorizedRetriever(edge, "", hospital.authorizer)
    seen = set(_ids(on_edge, doctor, "clinical note"))
    assert seen
    assert seen < {d.doc_id for d in hospital.data.documents}


def test_a_point_without_an_acl_on_edge_is_never_returned(doctor, edge, hospital):
    [vector] = bag_of_words(["clinical note"])
    edge.upsert([("00000000-0000-0000-0000-000000000001", vector, {"doc_id": "orphan"})])
    on_edge = AuthorizedRetriever(edge, "", hospital.authorizer)
    assert "orphan" not in _ids(on_edge, doctor, "clinical note")


def test_an_edge_failure_is_a_store_error_never_a_partial_result(tmp_path, doctor, hospital):
    store = EdgeStore.create(tmp_path / "wrong-dim", DIM + 1)  # every query vector is refused
    retriever = AuthorizedRetriever(store, "", hospital.authorizer)
    with pytest.raises(StoreError):
        _ids(retriever, doctor, "clinical note")
    store.close()


def test_constant_filters_are_refused_by_the_edge_compiler():
    for node in (Const(value=True), Const(value=False)):
        with pytest.raises(PolicyError):
            to_edge(node)


def test_an_integer_bound_a_float_cannot_hold_exactly_is_refused():
    with pytest.raises(PolicyError, match="not exact as a float"):
        to_edge(FieldCompare("acl.level", CompareOp.GE, 2**53 + 1))
    assert to_edge(FieldCompare("acl.level", CompareOp.GE, 2**53)) is not None


def test_an_edge_filter_selects_exactly_the_documents_an_equality_names(tmp_path, hospital):
    node = FieldEq("acl.classification", "PII")
    store = EdgeStore.create(tmp_path / "s", DIM)
    TrustedIngestor(store, "", bag_of_words, DOCUMENT_ACL).ingest(hospital.data.documents)
    on_edge = {p["doc_id"] for p in store.scroll(to_edge(node), limit=1000)}
    store.close()
    expected = {d.doc_id for d in hospital.data.documents if d.acl["classification"] == "PII"}
    assert on_edge == expected
