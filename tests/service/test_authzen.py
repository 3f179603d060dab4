"""The AuthZEN decision API over HTTP: same answers as the library, identity out of band."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from qdrant_client import models
from sqlalchemy import Column, MetaData, String, Table, create_engine, insert, text

from mamori.audit import AuditChain, MemorySink
from mamori.errors import StoreError
from mamori.genai import ContextFactory
from mamori.genai.authzen import AuthZenPdp
from mamori.genai.hospital import HOSPITAL_CLAIMS, HOSPITAL_DOMAIN, build_hospital
from mamori.identity import DevIssuer, JwksSource, VerifierConfig
from mamori.policy import Entity, EntityUid

from .conftest import bearer

DIM = 16


def _embed(texts):
    out = []
    for t in texts:
        vec = [0.0] * DIM
        for word in t.lower().split():
            vec[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIM] += 1.0
        out.append(vec)
    return out


@pytest.fixture
def users(tmp_path: Path) -> DevIssuer:
    """The end users' identity provider (not the service's own issuer)."""
    return DevIssuer(tmp_path / "idp", issuer="https://idp.test", audience="mamori")


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def hospital(sink):
    return build_hospital(_embed, DIM, audit_log=AuditChain(sink))


@pytest.fixture
def factory(users, hospital) -> ContextFactory:
    verifier = VerifierConfig(
        issuer="https://idp.test",
        audience="mamori",
        jwks=JwksSource(path=users.jwks_path),
        claims=HOSPITAL_CLAIMS,
    )
    return ContextFactory(verifier, HOSPITAL_DOMAIN, hospital.state)


@pytest.fixture
def pdp(factory, hospital, app) -> AuthZenPdp:
    made = AuthZenPdp(factory, hospital.authorizer, resolver=hospital.resolve)
    app.state.authzen = made
    return made


@pytest.fixture
def app_token(client, mint) -> str:
    r = client.post(
        "/v1/admin/tokens",
        json={"name": "ehr-frontend", "scopes": ["authz"]},
        headers=bearer(mint("root", "admin")),
    )
    assert r.status_code == 201, r.text
    return r.json()["token"]


def _user(users: DevIssuer, subject: str, role: str, **claims) -> str:
    return users.mint(subject, roles=[role], tenant="st-mary", claims=claims)


def _headers(app_token: str, subject_token: str) -> dict[str, str]:
    return {**bearer(app_token), "X-Mamori-Subject-Token": subject_token}


def _body(subject: str, action: str, rtype: str, rid: str, **extra) -> dict:
    return {
        "subject": {"type": "User", "id": subject},
        "action": {"name": action},
        "resource": {"type": rtype, "id": rid},
        **extra,
    }


def _decide(client, app_token, subject_token, body) -> dict:
    r = client.post("/access/v1/evaluation", json=body, headers=_headers(app_token, subject_token))
    assert r.status_code == 200, r.text
    return r.json()


CASES = [
    ("dr-house", "doctor", {}, "p1"),  # on p1's care team
    ("dr-house", "doctor", {}, "p2"),  # not on p2's care team
    ("dr-grey", "doctor", {}, "p2"),
    ("rita", "receptionist", {}, "p1"),
    ("pat-1", "patient", {"patient_id": "p1"}, "p1"),
    ("pat-1", "patient", {"patient_id": "p1"}, "p3"),
    ("dr-house", "doctor", {}, "p999"),  # does not exist
]


def test_every_decision_equals_the_library_decision_for_the_same_user_and_resource(  # noqa: PLR0917 -- pytest fixtures
    client, pdp, app_token, users, factory, hospital
):
    answers = set()
    for subject, role, claims, pid in CASES:
        token = _user(users, subject, role, **claims)
        got = _decide(client, app_token, token, _body(subject, "read_patient", "Patient", pid))
        entity = hospital.resolve("Hospital::Patient", pid)
        ctx = factory.from_token(token)
        expected = (
            entity is not None and hospital.authorizer.check(ctx, "read_patient", entity).allowed
        )
        assert got["decision"] is expected, (subject, pid, got)
        answers.add(expected)
    assert answers == {True, False}  # the cases exercise both answers


def test_each_http_decision_is_in_the_same_audit_log_as_the_library_decisions(
    client, pdp, app_token, users, sink
):
    token = _user(users, "dr-house", "doctor")
    _decide(client, app_token, token, _body("dr-house", "read_patient", "Patient", "p1"))
    last = sink.records()[-1]
    assert last.principal == 'Hospital::User::"dr-house"'
    assert last.action == "read_patient"
    assert last.decision == "allow"
    assert last.policy_ids


def test_a_body_subject_naming_another_user_is_denied_not_an_override(
    client, pdp, app_token, users
):
    body = _body("dr-house", "read_patient", "Patient", "p1")
    # Without the check, the body's subject would decide: dr-house may read p1.
    doctor = _user(users, "dr-house", "doctor")
    assert _decide(client, app_token, doctor, body)["decision"] is True
    # The app forwards the receptionist's token but claims to ask for dr-house.
    receptionist = _user(users, "rita", "receptionist")
    got = _decide(client, app_token, receptionist, body)
    assert got["decision"] is False
    assert "subject.id" in got["context"]["reason_admin"]["en"]


def test_subject_properties_in_the_body_are_denied_never_merged(client, pdp, app_token, users):
    body = _body("rita", "read_patient", "Patient", "p1")
    body["subject"]["properties"] = {"roles": ["doctor"], "user_id": "dr-house"}
    got = _decide(client, app_token, _user(users, "rita", "receptionist"), body)
    assert got["decision"] is False
    assert "subject properties" in got["context"]["reason_admin"]["en"]


def test_resource_properties_cannot_override_the_resolvers_trusted_attributes(
    client, pdp, app_token, users
):
    body = _body("dr-house", "read_patient", "Patient", "p2")
    body["resource"]["properties"] = {
        "tenant": "st-mary",
        "patient_id": "p2",
        "care_team": ["dr-house"],
    }
    assert _decide(client, app_token, _user(users, "dr-house", "doctor"), body)["decision"] is False


def test_a_subject_token_from_another_issuer_is_a_deny(client, pdp, app_token, tmp_path):
    rogue = DevIssuer(tmp_path / "rogue", issuer="https://idp.test", audience="mamori")
    token = rogue.mint("dr-house", roles=["doctor"], tenant="st-mary")
    got = _decide(client, app_token, token, _body("dr-house", "read_patient", "Patient", "p1"))
    assert got["decision"] is False
    assert "subject token rejected" in got["context"]["reason_admin"]["en"]


def test_an_expired_subject_token_is_a_deny(client, pdp, app_token, users):
    token = users.mint("dr-house", roles=["doctor"], tenant="st-mary", ttl_seconds=-120)
    got = _decide(client, app_token, token, _body("dr-house", "read_patient", "Patient", "p1"))
    assert got["decision"] is False


def test_a_missing_subject_token_header_is_a_422_naming_the_header(client, pdp, app_token):
    r = client.post(
        "/access/v1/evaluation",
        json=_body("dr-house", "read_patient", "Patient", "p1"),
        headers=bearer(app_token),
    )
    assert r.status_code == 422
    assert "X-Mamori-Subject-Token" in r.text


def test_an_end_user_jwt_cannot_call_the_decision_api(client, pdp, mint, users):
    r = client.post(
        "/access/v1/evaluation",
        json=_body("dr-house", "read_patient", "Patient", "p1"),
        headers=_headers(mint("dr-house", "viewer"), _user(users, "dr-house", "doctor")),
    )
    assert r.status_code == 403
    assert r.json()["policy_ids"] == ["api-token-scope-authz"]


def test_an_api_token_without_the_authz_scope_is_a_403(client, pdp, mint, users):
    made = client.post(
        "/v1/admin/tokens",
        json={"name": "ci-gate", "scopes": ["gate"]},
        headers=bearer(mint("root", "admin")),
    ).json()
    r = client.post(
        "/access/v1/evaluation",
        json=_body("dr-house", "read_patient", "Patient", "p1"),
        headers=_headers(made["token"], _user(users, "dr-house", "doctor")),
    )
    assert r.status_code == 403
    assert r.json()["policy_ids"] == ["api-token-scope-authz"]


def test_an_audit_store_failure_turns_an_allow_into_a_deny(  # noqa: PLR0917 -- pytest fixtures
    client, pdp, app_token, users, hospital, monkeypatch
):
    def down(**_kwargs):
        raise StoreError("audit store down")

    monkeypatch.setattr(hospital.authorizer.audit, "record", down)
    got = _decide(
        client,
        app_token,
        _user(users, "dr-house", "doctor"),
        _body("dr-house", "read_patient", "Patient", "p1"),
    )
    assert got["decision"] is False


def test_a_policy_evaluation_error_is_a_deny(client, pdp, app_token, users):
    # read_patient's schema context is empty: Cedar rejects the request, the PDP denies.
    body = _body("dr-house", "read_patient", "Patient", "p1", context={"break_glass": True})
    got = _decide(client, app_token, _user(users, "dr-house", "doctor"), body)
    assert got["decision"] is False
    assert "error" in got["context"]["reason_admin"]["en"]


def test_a_resource_type_outside_the_domain_namespace_is_a_deny(client, pdp, app_token, users):
    body = _body("dr-house", "read_patient", "Lifecycle::Artifact", "p1")
    got = _decide(client, app_token, _user(users, "dr-house", "doctor"), body)
    assert got["decision"] is False


def test_the_service_answers_503_until_a_pdp_is_configured(client, app_token, users):
    r = client.post(
        "/access/v1/evaluation",
        json=_body("dr-house", "read_patient", "Patient", "p1"),
        headers=_headers(app_token, _user(users, "dr-house", "doctor")),
    )
    assert r.status_code == 503


def _batch(client, app_token, token, semantic):
    r = client.post(
        "/access/v1/evaluations",
        json={
            "subject": {"type": "User", "id": "dr-house"},
            "action": {"name": "read_patient"},
            "evaluations": [
                {"resource": {"type": "Patient", "id": pid}} for pid in ("p1", "p2", "p3", "p4")
            ],
            "options": {"evaluations_semantic": semantic},
        },
        headers=_headers(app_token, token),
    )
    assert r.status_code == 200, r.text
    return [e["decision"] for e in r.json()["evaluations"]]


def test_a_batch_with_execute_all_answers_every_item_with_top_level_defaults(
    client, pdp, app_token, users
):
    token = _user(users, "dr-house", "doctor")
    assert _batch(client, app_token, token, "execute_all") == [True, False, True, False]


def test_deny_on_first_deny_stops_after_the_first_deny(client, pdp, app_token, users):
    token = _user(users, "dr-house", "doctor")
    assert _batch(client, app_token, token, "deny_on_first_deny") == [True, False]


def test_permit_on_first_permit_stops_after_the_first_permit(client, pdp, app_token, users):
    token = _user(users, "dr-house", "doctor")
    assert _batch(client, app_token, token, "permit_on_first_permit") == [True]


def test_a_batch_item_with_no_resource_anywhere_is_a_400(client, pdp, app_token, users):
    r = client.post(
        "/access/v1/evaluations",
        json={
            "subject": {"id": "dr-house"},
            "action": {"name": "read_patient"},
            "evaluations": [{}],
        },
        headers=_headers(app_token, _user(users, "dr-house", "doctor")),
    )
    assert r.status_code == 400
    assert "evaluations[0] has no resource" in r.json()["detail"]


def test_a_batch_item_naming_another_subject_is_denied_while_the_verified_ones_are_decided(
    client, pdp, app_token, users
):
    r = client.post(
        "/access/v1/evaluations",
        json={
            "action": {"name": "read_patient"},
            "resource": {"type": "Patient", "id": "p1"},
            "evaluations": [{"subject": {"id": "rita"}}, {"subject": {"id": "dr-house"}}],
        },
        headers=_headers(app_token, _user(users, "rita", "receptionist")),
    )
    # rita may read p1 herself; the item that claims dr-house is a deny, not his answer.
    assert [e["decision"] for e in r.json()["evaluations"]] == [True, False]


def test_the_well_known_configuration_names_the_endpoints(client):
    meta = client.get("/.well-known/authzen-configuration").json()
    assert meta["access_evaluation_endpoint"].endswith("/access/v1/evaluation")
    assert meta["access_evaluations_endpoint"].endswith("/access/v1/evaluations")


def _filter(client, app_token, token, subject="dr-house", **extra):
    r = client.post(
        "/access/v1/filter",
        json={
            "subject": {"id": subject},
            "action": {"name": "read_document"},
            "resource_type": "Document",
            **extra,
        },
        headers=_headers(app_token, token),
    )
    assert r.status_code == 200, r.text
    return r.json()


def _cedar_allowed(hospital, factory, token) -> set[str]:
    ctx = factory.from_token(token)
    allowed = set()
    for doc in hospital.data.documents:
        attrs = {**doc.acl, "care_team": frozenset(doc.acl["care_team"])}
        entity = Entity(EntityUid("Hospital::Document", doc.doc_id), attrs)
        if hospital.authorizer.check(ctx, "read_document", entity).allowed:
            allowed.add(doc.doc_id)
    return allowed


def test_the_returned_qdrant_filter_selects_exactly_what_cedar_authorizes(  # noqa: PLR0917 -- pytest fixtures
    client, pdp, app_token, users, hospital, factory
):
    token = _user(users, "dr-house", "doctor")
    out = _filter(client, app_token, token)
    points, _ = hospital.client.scroll(
        "notes", scroll_filter=models.Filter.model_validate(out["qdrant"]), limit=1000
    )
    selected = {p.payload["doc_id"] for p in points if p.payload}
    expected = _cedar_allowed(hospital, factory, token)
    assert expected
    assert expected < {d.doc_id for d in hospital.data.documents}
    assert selected == expected


def test_the_returned_sql_where_clause_selects_exactly_what_cedar_authorizes(  # noqa: PLR0917 -- pytest fixtures
    client, pdp, app_token, users, hospital, factory
):
    token = _user(users, "dr-house", "doctor")
    sql = {
        "table": "docs",
        "id_column": "id",
        "set_tables": {
            "care_team": {"table": "team", "owner_column": "doc_id", "value_column": "user_id"}
        },
        "dialect": "sqlite",
    }
    out = _filter(client, app_token, token, sql=sql)
    meta = MetaData()
    docs = Table(
        "docs",
        meta,
        Column("id", String, primary_key=True),
        *(Column(c, String) for c in ("tenant", "patient_id", "classification")),
    )
    team = Table("team", meta, Column("doc_id", String), Column("user_id", String))
    engine = create_engine("sqlite://")
    meta.create_all(engine)
    with engine.begin() as conn:
        for doc in hospital.data.documents:
            scalars = {k: v for k, v in doc.acl.items() if k != "care_team"}
            conn.execute(insert(docs).values(id=doc.doc_id, **scalars))
            for member in doc.acl["care_team"]:
                conn.execute(insert(team).values(doc_id=doc.doc_id, user_id=member))
        query = text(f"SELECT id FROM docs WHERE {out['sql']['where']}")
        selected = set(conn.scalars(query, out["sql"]["params"]))
    assert selected == _cedar_allowed(hospital, factory, token)


def test_the_filter_json_names_each_condition_in_the_documented_form(client, pdp, app_token, users):
    out = _filter(client, app_token, _user(users, "dr-house", "doctor"))
    flat = str(out["filter"])
    assert "'eq': {'field': 'tenant', 'value': 'st-mary'}" in flat
    assert "'contains': {'field': 'care_team', 'value': 'dr-house'}" in flat


def test_a_forged_subject_on_the_filter_endpoint_gets_the_empty_filter(
    client, pdp, app_token, users
):
    out = _filter(client, app_token, _user(users, "rita", "receptionist"), subject="dr-house")
    assert out == {"filter": {"const": False}, "qdrant": None}


def test_a_sql_identifier_that_is_not_plain_is_a_422(client, pdp, app_token, users):
    r = client.post(
        "/access/v1/filter",
        json={
            "subject": {"id": "dr-house"},
            "action": {"name": "read_document"},
            "resource_type": "Document",
            "sql": {"table": "docs; DROP TABLE docs"},
        },
        headers=_headers(app_token, _user(users, "dr-house", "doctor")),
    )
    assert r.status_code == 422
    assert "not a plain SQL identifier" in r.json()["detail"]
