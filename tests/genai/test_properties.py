from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamori.genai import ClassificationSchema, project
from mamori.genai.hospital import build_hospital, synthetic_data
from mamori.policy import Entity, EntityUid, Request

from .conftest import DIM, bag_of_words

LABELS = st.sampled_from(["PUBLIC", "PII", "PHI"])


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    role=st.sampled_from(["doctor", "receptionist", "patient", "nurse"]),
    subject=st.sampled_from(["dr-house", "dr-grey", "rita"]),
    tenant=st.sampled_from(["st-mary", "general"]),
    pid=st.sampled_from(["p1", "p2", "p3"]),
    n=st.integers(min_value=2, max_value=8),
    seed=st.integers(0, 5),
    query=st.sampled_from(["diabetes", "call back", "note follow-up", "asthma"]),
)
def test_retrieved_is_a_subset_of_authorized(  # noqa: PLR0917 -- hypothesis draws
    issuer, verifier, role, subject, tenant, pid, n, seed, query
):
    from mamori.genai import ContextFactory
    from mamori.genai.hospital import HOSPITAL_DOMAIN

    hospital = build_hospital(bag_of_words, DIM, data=synthetic_data(seed=seed, patients=n))
    ctx = ContextFactory(verifier, HOSPITAL_DOMAIN, hospital.state).from_token(
        issuer.mint(subject, roles=[role], tenant=tenant, claims={"patient_id": pid})
    )
    hits = hospital.retriever.search(ctx, bag_of_words([query])[0], limit=50)
    authorized = set()
    for d in hospital.data.documents:
        e = Entity(
            EntityUid("Hospital::Document", d.doc_id),
            {**d.acl, "care_team": frozenset(d.acl["care_team"])},
        )
        req = Request(ctx.uid, ctx.domain.action("read_document"), e.uid)
        if hospital.engine.decide(req, [*ctx.entities(), e]).allowed:
            authorized.add(d.doc_id)
    got = {h.doc_id for h in hits}
    assert got <= authorized
    assert got == authorized  # limit exceeds the corpus, so filtered search is also complete


JSON = st.recursive(
    st.one_of(st.text(max_size=4), st.integers(), st.booleans()),
    lambda kids: st.one_of(
        st.lists(kids, max_size=3), st.dictionaries(st.sampled_from("abcd"), kids, max_size=3)
    ),
    max_leaves=12,
)


def _leaves(data, path=""):
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _leaves(v, f"{path}.{k}" if path else k)
    elif isinstance(data, list):
        for v in data:
            yield from _leaves(v, f"{path}[]")
    else:
        yield path, data


@settings(max_examples=200, deadline=None)
@given(
    data=JSON,
    labels=st.dictionaries(
        st.sampled_from(["a", "b", "a.c", "b[]", "a.d[]", "c"]), LABELS, max_size=4
    ),
    readable=st.frozensets(LABELS),
)
def test_projected_is_a_subset_of_permitted(data, labels, readable):
    schema = ClassificationSchema(labels)
    result = project(data, schema, readable)
    leaves = [] if result.data is None else list(_leaves(result.data))
    for path, _ in leaves:
        assert schema.label_of(path) in readable
    assert result.labels <= readable
