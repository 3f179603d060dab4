"""Issue 14, item 12: aggregates are computed over the authorized set only.

The oracle is Cedar itself: a full decision per patient on the shipped policies, apart from
the filter, the evaluator and the SQL compiler under test."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, ForeignKey, MetaData, String, Table, create_engine, insert

from mamori.genai import AuthorizedAggregate, SetColumn, evaluate
from mamori.genai.hospital import synthetic_data
from mamori.policy import (
    And,
    Const,
    Entity,
    EntityUid,
    FieldCompare,
    FieldContains,
    FieldEq,
    FieldExists,
    Not,
    Or,
    Request,
)
from mamori.policy.filters import CompareOp

DIAGNOSES = ["type 2 diabetes", "hypertension", "asthma", "low back pain"]


def _oracle_count(hospital, session, diagnosis):
    count = 0
    for pid, record in hospital.data.patients.items():
        entity = hospital.resolve("Hospital::Patient", pid)
        request = Request(session.ctx.uid, session.ctx.domain.action("read_patient"), entity.uid)
        allowed = hospital.engine.decide(request, [*session.ctx.entities(), entity]).allowed
        if allowed and any(v["diagnosis"] == diagnosis for v in record["visits"]):
            count += 1
    return count


def _every_patient_count(hospital, diagnosis):
    return sum(
        1
        for record in hospital.data.patients.values()
        if any(v["diagnosis"] == diagnosis for v in record["visits"])
    )


@pytest.fixture
def big_hospital():
    from mamori.genai.hospital import build_hospital

    from .conftest import DIM, bag_of_words

    return build_hospital(bag_of_words, DIM, data=synthetic_data(patients=16))


@pytest.fixture
def big_doctor(big_hospital, issuer, verifier):
    from mamori.genai import ContextFactory, Session
    from mamori.genai.hospital import HOSPITAL_DOMAIN

    factory = ContextFactory(verifier, HOSPITAL_DOMAIN, big_hospital.state)
    return Session(factory.from_token(issuer.mint("dr-house", roles=["doctor"], tenant="st-mary")))


@pytest.mark.parametrize("diagnosis", DIAGNOSES)
def test_12_a_phi_count_counts_only_the_patients_the_doctor_may_read(
    big_hospital, big_doctor, diagnosis
):
    result = big_hospital.gateway.call(big_doctor, "count_patients", {"diagnosis": diagnosis})
    assert result.ok
    expected = _oracle_count(big_hospital, big_doctor, diagnosis)
    assert result.data == {"patients": expected}


def test_12_the_naive_count_would_have_counted_other_doctors_patients(big_hospital, big_doctor):
    # The attack: counting over every patient tells dr-house about dr-grey's patients.
    leaks = [
        d
        for d in DIAGNOSES
        if _every_patient_count(big_hospital, d) != _oracle_count(big_hospital, big_doctor, d)
    ]
    assert leaks
    for diagnosis in leaks:
        result = big_hospital.gateway.call(big_doctor, "count_patients", {"diagnosis": diagnosis})
        assert result.data["patients"] == _oracle_count(big_hospital, big_doctor, diagnosis)


def test_12_a_receptionist_gets_no_phi_count_and_is_told_it_was_redacted(hospital, receptionist):
    result = hospital.gateway.call(receptionist, "count_patients", {"diagnosis": "hypertension"})
    assert result.ok
    assert result.data == {}
    assert result.redacted == ("patients",)


def test_12_a_patient_counts_only_themself(hospital, patient):
    own = hospital.data.patients["p1"]["visits"][0]["diagnosis"]
    for diagnosis in DIAGNOSES:
        result = hospital.gateway.call(patient, "count_patients", {"diagnosis": diagnosis})
        assert result.data["patients"] == (1 if diagnosis == own else 0)


def test_12_a_principal_with_no_permit_counts_nothing(hospital, login):
    janitor = login("joe", "janitor")
    aggregate = AuthorizedAggregate(
        hospital.authorizer, action="read_patient", resource_type="Patient"
    )
    rows = list(hospital.data.patients)
    assert aggregate.select(janitor.ctx, rows, hospital.patient_attributes) == []


def test_12_the_sql_count_runs_in_the_database_over_the_authorized_rows(big_hospital, big_doctor):
    meta = MetaData()
    patients = Table(
        "patients",
        meta,
        Column("id", String, primary_key=True),
        Column("tenant", String),
        Column("diagnosis", String),
    )
    team = Table(
        "care_team",
        meta,
        Column("patient", String, ForeignKey("patients.id")),
        Column("user_id", String),
    )
    engine = create_engine("sqlite://")
    meta.create_all(engine)
    with engine.begin() as conn:
        for pid, record in big_hospital.data.patients.items():
            conn.execute(
                insert(patients).values(
                    id=pid,
                    tenant=big_hospital.data.tenants[pid],
                    diagnosis=record["visits"][0]["diagnosis"],
                )
            )
            for user in big_hospital.data.care_teams[pid]:
                conn.execute(insert(team).values(patient=pid, user_id=user))
    columns = {
        "tenant": patients.c.tenant,
        "patient_id": patients.c.id,
        "care_team": SetColumn(team, "patient", "user_id", patients.c.id),
    }
    aggregate = AuthorizedAggregate(
        big_hospital.authorizer, action="read_patient", resource_type="Patient"
    )
    with engine.connect() as conn:
        for diagnosis in DIAGNOSES:
            got = aggregate.count_sql(
                big_doctor.ctx,
                conn,
                patients,
                columns,
                where=patients.c.diagnosis == diagnosis,
            )
            assert got == _oracle_count(big_hospital, big_doctor, diagnosis)


def test_12_a_filter_that_does_not_map_onto_the_columns_counts_nothing(hospital, doctor):
    meta = MetaData()
    patients = Table("patients", meta, Column("id", String, primary_key=True))
    engine = create_engine("sqlite://")
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(patients).values(id="p1"))
    aggregate = AuthorizedAggregate(
        hospital.authorizer, action="read_patient", resource_type="Patient"
    )
    with engine.connect() as conn:
        assert aggregate.count_sql(doctor.ctx, conn, patients, {"patient_id": patients.c.id}) == 0


# --- the evaluator: three-valued, type-strict -----------------------------------------
@pytest.mark.parametrize(
    ("node", "attrs", "expected"),
    [
        (FieldEq("a", 1), {"a": True}, None),  # Cedar's 1 is not true
        (FieldEq("a", "x"), {}, None),
        (Not(FieldEq("a", "x")), {}, None),  # NOT unknown stays unknown: never included
        (Or((FieldEq("a", "x"), FieldEq("b", "y"))), {"b": "y"}, True),
        (And((FieldEq("a", "x"), FieldEq("b", "y"))), {"b": "z"}, False),
        (FieldContains("t", "u"), {"t": frozenset({"u"})}, True),
        (FieldContains("t", "u"), {"t": "u"}, None),
        (FieldExists("r.s"), {"r": {"s": 1}}, True),
        (FieldCompare("n", CompareOp.GE, 3), {"n": 3}, True),
        (FieldCompare("n", CompareOp.LT, 3), {"n": True}, None),
        (Const(value=True), {}, True),
    ],
)
def test_the_evaluator_is_three_valued_and_type_strict(node, attrs, expected):
    assert evaluate(node, attrs) is expected


ATTRS = st.fixed_dictionaries(
    {
        "tenant": st.sampled_from(["st-mary", "general"]),
        "care_team": st.frozensets(st.sampled_from(["dr-house", "dr-grey", "rita"]), max_size=2),
    }
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    role=st.sampled_from(["doctor", "receptionist", "patient", "nurse"]),
    subject=st.sampled_from(["dr-house", "dr-grey", "rita"]),
    tenant=st.sampled_from(["st-mary", "general"]),
    pid=st.sampled_from(["p1", "p2"]),
    rows=st.lists(st.tuples(st.sampled_from(["p1", "p2", "p3"]), ATTRS), max_size=8),
)
def test_the_authorized_selection_equals_cedars_decisions(  # noqa: PLR0917 -- hypothesis draws
    hospital, login, role, subject, tenant, pid, rows
):
    session = login(subject, role, tenant=tenant, patient_id=pid)
    aggregate = AuthorizedAggregate(
        hospital.authorizer, action="read_patient", resource_type="Patient"
    )
    entities = [
        Entity(EntityUid("Hospital::Patient", f"{p}-{i}"), {**attrs, "patient_id": p})
        for i, (p, attrs) in enumerate(rows)
    ]
    selected = aggregate.select(session.ctx, entities, lambda e: e.attrs)
    expected = [
        e
        for e in entities
        if hospital.engine.decide(
            Request(session.ctx.uid, session.ctx.domain.action("read_patient"), e.uid),
            [*session.ctx.entities(), e],
        ).allowed
    ]
    assert selected == expected
