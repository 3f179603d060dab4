"""GenAI decisions on the lifecycle store's audit chain (real SQLite, real Alembic schema)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from mamori.audit import verify_chain
from mamori.errors import StoreError
from mamori.genai import ContextFactory, Session
from mamori.genai.hospital import HOSPITAL_CLAIMS, HOSPITAL_DOMAIN, build_hospital, synthetic_data
from mamori.identity import DevIssuer, JwksSource, VerifierConfig
from mamori.store.auditlog import SqlAuditLog
from mamori.store.db import Store, audit_append, audit_records

DIM = 4


def bag_of_words(texts):
    """Retrieval is not under test here; any fixed vector will do."""
    return [[1.0, 0.0, 0.0, 0.0] for _ in texts]


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'mamori.db'}")
    s.migrate()
    yield s
    s.dispose()


@pytest.fixture
def doctor_on(tmp_path):
    issuer = DevIssuer(tmp_path / "keys", issuer="https://idp.test", audience="mamori")
    config = VerifierConfig(
        issuer="https://idp.test",
        audience="mamori",
        jwks=JwksSource(path=issuer.jwks_path),
        claims=HOSPITAL_CLAIMS,
    )

    def make(hospital) -> Session:
        factory = ContextFactory(config, HOSPITAL_DOMAIN, hospital.state)
        return Session(
            factory.from_token(issuer.mint("dr-house", roles=["doctor"], tenant="st-mary"))
        )

    return make


def test_gateway_decisions_are_committed_to_the_store_chain(store, doctor_on):
    hospital = build_hospital(
        bag_of_words, DIM, data=synthetic_data(), audit_log=SqlAuditLog(store)
    )
    session = doctor_on(hospital)
    assert hospital.gateway.call(session, "get_patient", {"patient_id": "p1"}).ok
    with store.read() as s:
        records = audit_records(s)
    assert verify_chain(records) == len(records)
    allow = [r for r in records if r.action == "read_patient" and r.decision == "allow"]
    assert allow[-1].policy_ids == ("doctor-read-own-patient",)
    assert allow[-1].principal == 'Hospital::User::"dr-house"'


def test_lifecycle_and_genai_appends_interleave_on_one_chain(store, doctor_on):
    first, second = SqlAuditLog(store), SqlAuditLog(store)  # e.g. two gateway processes
    with store.write() as s:
        audit_append(s, principal="ci", action="scan.submit", resource="job:1", decision="allow")
    hospital = build_hospital(bag_of_words, DIM, data=synthetic_data(), audit_log=first)
    hospital.gateway.call(doctor_on(hospital), "get_patient", {"patient_id": "p2"})
    with store.write() as s:
        audit_append(s, principal="worker", action="scan.finish", resource="job:1", decision="ok")
    second.record(
        principal="x", action="read_field", resource="r", decision="deny", policy_ids=(), reason=""
    )
    records = first.records()
    assert verify_chain(records) == len(records)
    assert records[0].action == "scan.submit"
    assert {"read_patient", "scan.finish", "read_field"} <= {r.action for r in records}


def test_an_allow_that_cannot_be_stored_is_not_given(store, doctor_on):
    hospital = build_hospital(
        bag_of_words, DIM, data=synthetic_data(), audit_log=SqlAuditLog(store)
    )
    session = doctor_on(hospital)
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_log"))
    result = hospital.gateway.call(session, "get_patient", {"patient_id": "p1"})
    assert not result.ok


def test_an_unknown_resource_with_a_broken_store_is_still_only_a_denial(store, doctor_on):
    hospital = build_hospital(
        bag_of_words, DIM, data=synthetic_data(), audit_log=SqlAuditLog(store)
    )
    session = doctor_on(hospital)
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_log"))
    assert not hospital.gateway.call(session, "get_patient", {"patient_id": "nope"}).ok


def test_sql_log_record_raises_store_error_when_the_table_is_missing(store):
    with store.engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_log"))
    with pytest.raises(StoreError):
        SqlAuditLog(store).record(
            principal="p", action="a", resource="r", decision="deny", policy_ids=(), reason=""
        )
