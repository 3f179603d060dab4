"""Property tests where the Cedar policies vary too.

Policy sets are drawn from a small grammar of permit/forbid rules over the hospital schema,
including conditions that partial evaluation leaves in a form the filter translator must refuse
(``like``, ``if-then-else``, comparisons between two resource attributes). The oracle is always
the engine's full decision on each item; retrieval and projection go through the real
Authorizer, Cedar partial evaluation, Qdrant local mode and the projection code.
"""

from __future__ import annotations

from importlib.resources import files

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from qdrant_client import QdrantClient

from mamori.audit import AuditChain, MemorySink
from mamori.errors import PolicyError
from mamori.genai import (
    AuthorizedRetriever,
    Authorizer,
    ContextFactory,
    ConversationStore,
    SourceDocument,
    TrustedIngestor,
    project,
)
from mamori.genai.hospital import DOCUMENT_ACL, HOSPITAL_DOMAIN, PATIENT_SCHEMA, synthetic_data
from mamori.identity import ClaimMapping, JwksSource, VerifierConfig
from mamori.policy import Const, Entity, EntityUid, PolicyEngine, Request, simplify

from .conftest import DIM, bag_of_words

ROLES = ["doctor", "receptionist", "patient", "nurse"]
SUBJECTS = ["dr-house", "dr-grey", "rita", "pat-1"]
TENANTS = ["st-mary", "general"]
PATIENTS = ["p1", "p2", "p3"]
CLASSES = ["PHI", "PII", "PUBLIC"]
ACTION = 'Hospital::Action::"read_document"'

# --- the grammar ------------------------------------------------------------------------
TRANSLATABLE_ATOMS = st.one_of(
    st.just("resource.tenant == principal.tenant"),
    st.sampled_from(TENANTS).map(lambda t: f'resource.tenant == "{t}"'),
    st.sampled_from(CLASSES).map(lambda c: f'resource.classification == "{c}"'),
    st.sampled_from(CLASSES).map(lambda c: f'resource.classification != "{c}"'),
    st.just("resource.care_team.contains(principal.user_id)"),
    st.sampled_from(SUBJECTS).map(lambda s: f'resource.care_team.contains("{s}")'),
    st.lists(st.sampled_from(SUBJECTS), min_size=1, max_size=2, unique=True).map(
        lambda ss: "resource.care_team.containsAny([{}])".format(", ".join(f'"{s}"' for s in ss))
    ),
    st.just("(principal has patient_id && resource.patient_id == principal.patient_id)"),
    st.lists(st.sampled_from(CLASSES), min_size=1, max_size=2, unique=True).map(
        lambda cs: "[{}].contains(resource.classification)".format(", ".join(f'"{c}"' for c in cs))
    ),
    st.sampled_from(TENANTS).map(lambda t: f'principal.tenant == "{t}"'),
)
#: Conditions the residual translator must refuse; any policy using one makes the filter deny.
UNTRANSLATABLE_ATOMS = st.sampled_from(
    [
        'resource.patient_id like "p*"',
        '(if resource.tenant == "st-mary" then true else false)',
        "resource.patient_id == resource.tenant",
        "resource.care_team.contains(resource.patient_id)",
    ]
)


def _conditions(atoms: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    leaf = st.one_of(atoms, atoms.map(lambda a: f"!({a})"))
    return st.recursive(
        leaf,
        lambda kids: st.tuples(kids, st.sampled_from(["&&", "||"]), kids).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        max_leaves=3,
    )


PRINCIPAL_SCOPES = st.one_of(
    st.just("principal"),  # drawn as often as the two narrower scopes together
    st.just("principal"),
    st.sampled_from(ROLES).map(lambda r: f'principal in Hospital::Role::"{r}"'),
    st.sampled_from(SUBJECTS).map(lambda s: f'principal == Hospital::User::"{s}"'),
)


@st.composite
def document_policy(
    draw: st.DrawFn, *, allow_untranslatable: bool, effect: str | None = None
) -> str:
    effect = effect or draw(st.sampled_from(["permit", "forbid"]))
    principal = draw(PRINCIPAL_SCOPES)
    resource = draw(st.sampled_from(["resource", "resource is Hospital::Document"]))
    atoms = (
        st.one_of(TRANSLATABLE_ATOMS, TRANSLATABLE_ATOMS, TRANSLATABLE_ATOMS, UNTRANSLATABLE_ATOMS)
        if allow_untranslatable
        else TRANSLATABLE_ATOMS
    )
    clauses = draw(
        st.lists(
            st.tuples(st.sampled_from(["when", "when", "unless"]), _conditions(atoms)),
            min_size=0 if effect == "forbid" else 1,
            max_size=2,
        )
    )
    body = " ".join(f"{kind} {{ {cond} }}" for kind, cond in clauses)
    return f"{effect} ({principal}, action == {ACTION}, {resource}) {body};"


@st.composite
def field_policy(draw: st.DrawFn) -> str:
    effect = draw(st.sampled_from(["permit", "forbid"]))
    principal = draw(PRINCIPAL_SCOPES)
    labels = draw(st.lists(st.sampled_from(CLASSES), min_size=1, max_size=2, unique=True))
    if len(labels) == 1 and draw(st.booleans()):
        resource = f'resource == Hospital::Classification::"{labels[0]}"'
        return f'{effect} ({principal}, action == Hospital::Action::"read_field", {resource});'
    cond = " || ".join(f'resource == Hospital::Classification::"{c}"' for c in labels)
    return (
        f'{effect} ({principal}, action == Hospital::Action::"read_field", resource) '
        f"when {{ {cond} }};"
    )


def policy_sets(*, allow_untranslatable: bool) -> st.SearchStrategy[str]:
    """At least one document permit, then any mix of document and field rules."""
    first = document_policy(allow_untranslatable=allow_untranslatable, effect="permit")
    rules = st.one_of(
        document_policy(allow_untranslatable=allow_untranslatable),
        document_policy(allow_untranslatable=allow_untranslatable, effect="permit"),
        field_policy(),
    )
    return st.tuples(first, st.lists(rules, max_size=4)).map(lambda t: "\n".join((t[0], *t[1])))


ACLS = st.fixed_dictionaries(
    {
        "tenant": st.sampled_from(TENANTS),
        "patient_id": st.sampled_from(PATIENTS),
        "classification": st.sampled_from(CLASSES),
        "care_team": st.lists(st.sampled_from(SUBJECTS), max_size=2, unique=True),
    }
)
USERS = st.tuples(
    st.sampled_from(SUBJECTS),
    st.lists(st.sampled_from(ROLES), min_size=1, max_size=2, unique=True),
    st.sampled_from(TENANTS),
    st.one_of(st.none(), st.sampled_from(PATIENTS)),
)

_SCHEMA_TEXT = files("mamori.policy").joinpath("data/hospital.cedarschema").read_text("utf-8")


# --- helpers ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def verifier(issuer) -> VerifierConfig:
    """Every drawn role maps to itself, and any two may be held together: the policy grammar,
    not the hospital's separation of duties, is under test here."""
    return VerifierConfig(
        issuer="https://idp.test",
        audience="mamori",
        jwks=JwksSource(path=issuer.jwks_path),
        claims=ClaimMapping(
            roles={"roles": {r: {r} for r in ROLES}}, attributes={"patient_id": "patient_id"}
        ),
    )


class _SpyClient:
    """Counts queries so a test can prove that a refused filter sent none."""

    def __init__(self, client: QdrantClient) -> None:
        self._client = client
        self.queries = 0

    def query_points(self, *args, **kwargs):
        self.queries += 1
        return self._client.query_points(*args, **kwargs)


def _world(issuer, verifier, policies, acls, user):
    engine = PolicyEngine(policies=policies, schema=_SCHEMA_TEXT)
    authorizer = Authorizer(engine, ConversationStore.ephemeral(), AuditChain(MemorySink()))
    client = QdrantClient(":memory:")
    ingestor = TrustedIngestor(client, "docs", bag_of_words, DOCUMENT_ACL)
    ingestor.ensure_collection(DIM)
    docs = [SourceDocument(f"d{i}", f"note {i} about care", acl) for i, acl in enumerate(acls)]
    ingestor.ingest(docs)
    subject, roles, tenant, pid = user
    claims = {"patient_id": pid} if pid else {}
    ctx = ContextFactory(verifier, HOSPITAL_DOMAIN, authorizer.state).from_token(
        issuer.mint(subject, roles=roles, tenant=tenant, claims=claims)
    )
    return engine, authorizer, client, docs, ctx


def _allowed(engine, ctx, entity, action):
    request = Request(ctx.uid, ctx.domain.action(action), entity.uid)
    return engine.decide(request, [*ctx.entities(), entity]).allowed


def _doc_entity(doc):
    return Entity(
        EntityUid("Hospital::Document", doc.doc_id),
        {**doc.acl, "care_team": frozenset(doc.acl["care_team"])},
    )


PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- properties -------------------------------------------------------------------------
@PROPERTY
@given(
    policies=policy_sets(allow_untranslatable=True),
    acls=st.lists(ACLS, min_size=1, max_size=12),
    user=USERS,
)
def test_retrieved_is_a_subset_of_authorized_for_random_policies(
    issuer, verifier, policies, acls, user
):
    engine, authorizer, client, docs, ctx = _world(issuer, verifier, policies, acls, user)
    spy = _SpyClient(client)
    retriever = AuthorizedRetriever(spy, "docs", authorizer)  # type: ignore[arg-type]
    hits = retriever.search(ctx, bag_of_words(["note about care"])[0], limit=100)
    authorized = {d.doc_id for d in docs if _allowed(engine, ctx, _doc_entity(d), "read_document")}
    got = {h.doc_id for h in hits}
    assert got <= authorized
    node = retriever.last_filter
    event(f"filter {'constant' if isinstance(node, Const) else 'pushed'}; {len(got)} hits")
    if isinstance(node, Const):
        # An empty allow-set, a refused residual, and an unconditional permit (which would be
        # an unfiltered query) all end here: nothing is sent to the vector store.
        assert spy.queries == 0
        assert got == set()
    else:
        assert got == authorized  # the limit exceeds the corpus: the pushed filter is exact


@PROPERTY
@given(
    policies=policy_sets(allow_untranslatable=True),
    user=USERS,
)
def test_an_untranslatable_residual_denies_and_never_queries(issuer, verifier, policies, user):
    acl = {"tenant": "st-mary", "patient_id": "p1", "classification": "PII", "care_team": []}
    engine, authorizer, client, _docs, ctx = _world(issuer, verifier, policies, [acl], user)
    try:
        raw, _ = engine.resource_filter(
            principal=ctx.uid,
            action=ctx.domain.action("read_document"),
            resource_type="Hospital::Document",
            entities=ctx.entities(),
        )
    except PolicyError:
        refused = True
    else:
        refused = False
    event("residual refused" if refused else "residual translated")
    spy = _SpyClient(client)
    hits = AuthorizedRetriever(spy, "docs", authorizer).search(  # type: ignore[arg-type]
        ctx, bag_of_words(["note"])[0], limit=10
    )
    if refused:
        assert hits == []
        assert spy.queries == 0
        assert authorizer.resource_filter(ctx, "read_document", "Document") == Const(value=False)
    else:
        assert authorizer.resource_filter(ctx, "read_document", "Document") == simplify(raw)


@PROPERTY
@given(policies=policy_sets(allow_untranslatable=False), user=USERS, pid=st.sampled_from(PATIENTS))
def test_projected_is_a_subset_of_permitted_for_random_policies(
    issuer, verifier, policies, user, pid
):
    engine, authorizer, _client, _docs, ctx = _world(issuer, verifier, policies, [], user)
    record = synthetic_data(patients=3).patients[pid]
    labels = PATIENT_SCHEMA.all_labels()
    permitted = {
        label
        for label in labels
        if _allowed(engine, ctx, Entity(EntityUid("Hospital::Classification", label)), "read_field")
    }
    readable = authorizer.readable_labels(ctx, labels)
    assert readable == permitted
    result = project(record, PATIENT_SCHEMA, readable)
    assert result.labels <= permitted
    for path in _leaf_paths(result.data):
        assert PATIENT_SCHEMA.label_of(path) in permitted


def _leaf_paths(data, path=""):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaf_paths(value, f"{path}.{key}" if path else key)
    elif isinstance(data, list):
        for value in data:
            yield from _leaf_paths(value, f"{path}[]")
    elif data is not None:
        yield path
