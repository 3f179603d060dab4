"""Issue 14, items 7, 9 and 13: a trusted context is re-checked on every use, and revocations
and conversation taint live in the store, shared by processes and kept over restarts.

Each attack is first shown to have something to steal (the record or the send works while the
context is live and untainted), then refused; the refusal is one audit record."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from mamori.errors import IdentityError
from mamori.genai import (
    EXPIRED_MESSAGE,
    ContextFactory,
    ConversationStore,
    Session,
)
from mamori.genai.hospital import HOSPITAL_CLAIMS, HOSPITAL_DOMAIN, build_hospital, synthetic_data
from mamori.identity import JwksSource, VerifierConfig
from mamori.store import Store
from mamori.store.auditlog import iter_audit

from .conftest import DIM, bag_of_words

BILLING = {"to": "billing@st-mary.example", "body": "summary of today"}


class Clock:
    """A settable clock for the liveness checks (PyJWT still verifies on the real one)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(database_url):
    s = Store(database_url)
    s.migrate()
    yield s
    s.dispose()


@pytest.fixture
def strict(issuer) -> VerifierConfig:
    """The verifier of the issue's report: no leeway at all."""
    return VerifierConfig(
        issuer="https://idp.test",
        audience="mamori",
        jwks=JwksSource(path=issuer.jwks_path),
        leeway_seconds=0,
        claims=HOSPITAL_CLAIMS,
    )


def _world(store, config, *, clock=time.time):
    hospital = build_hospital(
        bag_of_words,
        DIM,
        data=synthetic_data(),
        state=ConversationStore(store, clock=clock),
    )
    return hospital, ContextFactory(config, HOSPITAL_DOMAIN, hospital.state)


def _records(hospital):
    return list(hospital.authorizer.audit.records())


# --- item 7: exp and nbf are re-checked on every use ------------------------------------
def test_07_one_second_after_exp_a_tool_call_on_an_existing_session_is_refused(
    store, strict, issuer
):
    hospital, factory = _world(store, strict)
    token = issuer.mint("dr-house", roles=["doctor"], tenant="st-mary", ttl_seconds=2)
    session = Session(factory.from_token(token))
    live = hospital.gateway.call(session, "get_patient", {"patient_id": "p1"})
    assert "hypertension" in str(live.data)  # the record a live session may read
    time.sleep(max(0.0, session.ctx.principal.expires_at + 1 - time.time()) + 0.05)
    before = len(_records(hospital))
    late = hospital.gateway.call(session, "get_patient", {"patient_id": "p1"})
    assert not late.ok
    assert late.error == EXPIRED_MESSAGE
    assert late.data is None
    new = _records(hospital)[before:]
    assert [(r.decision, r.reason) for r in new] == [("deny", "token expired")]


def test_07_retrieval_and_decisions_on_an_expired_context_are_denied(store, strict, issuer):
    clock = Clock()
    hospital, factory = _world(store, strict, clock=clock)
    ctx = factory.from_token(issuer.mint("dr-house", roles=["doctor"], tenant="st-mary"))
    assert hospital.retriever.search(ctx, bag_of_words(["note"])[0], limit=20)
    clock.now = ctx.principal.expires_at + 1
    assert hospital.retriever.search(ctx, bag_of_words(["note"])[0], limit=20) == []
    patient = hospital.resolve("Hospital::Patient", "p1")
    decision = hospital.authorizer.check(ctx, "read_patient", patient)
    assert not decision.allowed
    assert decision.reason == "token expired"


def test_07_the_verifiers_leeway_applies_on_every_use_and_no_more(store, issuer, verifier):
    clock = Clock()
    hospital, factory = _world(store, verifier, clock=clock)  # the default 30 s leeway
    session = Session(
        factory.from_token(issuer.mint("dr-house", roles=["doctor"], tenant="st-mary"))
    )
    clock.now = session.ctx.principal.expires_at + verifier.leeway_seconds
    assert hospital.gateway.call(session, "get_patient", {"patient_id": "p1"}).ok
    clock.now += 1
    assert hospital.gateway.call(session, "get_patient", {"patient_id": "p1"}).error == (
        EXPIRED_MESSAGE
    )


def test_07_a_context_is_not_usable_before_its_nbf(store, strict, issuer):
    clock = Clock()
    hospital, factory = _world(store, strict, clock=clock)
    nbf = int(time.time()) - 1  # valid now for PyJWT...
    token = issuer.mint("dr-house", roles=["doctor"], tenant="st-mary", claims={"nbf": nbf})
    session = Session(factory.from_token(token))
    assert session.ctx.not_before == nbf
    clock.now = nbf - 5  # ...but the context is used on a clock that is earlier than nbf
    result = hospital.gateway.call(session, "get_patient", {"patient_id": "p1"})
    assert result.error == EXPIRED_MESSAGE
    assert _records(hospital)[-1].reason == "token not yet valid"


def test_07_a_revocation_store_that_cannot_be_read_denies(store, issuer, verifier):
    hospital, factory = _world(store, verifier)
    session = Session(
        factory.from_token(issuer.mint("dr-house", roles=["doctor"], tenant="st-mary"))
    )
    with store.write() as s:
        s.connection().exec_driver_sql("DROP TABLE genai_revocations")
    result = hospital.gateway.call(session, "get_patient", {"patient_id": "p1"})
    assert not result.ok
    assert _records(hospital)[-1].reason == "revocation state unavailable"


# --- item 9: conversation state in the store, keyed by (principal, conversation id) -----
def test_09_phi_read_then_a_new_session_object_cannot_send_to_a_public_only_sink(
    store, issuer, verifier
):
    hospital, factory = _world(store, verifier)
    token = issuer.mint("dr-house", roles=["doctor"], tenant="st-mary")
    # The sink works for an untainted conversation: there is something to refuse.
    assert hospital.gateway.call(Session(factory.from_token(token), "c0"), "send_email", BILLING).ok
    turn1 = Session(factory.from_token(token), "c1")
    assert hospital.gateway.call(turn1, "get_patient", {"patient_id": "p1"}).ok
    # A stateless HTTP app: the next turn builds everything again from the token.
    turn2 = Session(factory.from_token(token), "c1")
    before = len(_records(hospital))
    result = hospital.gateway.call(turn2, "send_email", BILLING)
    assert not result.ok
    assert len(hospital.sent) == 1  # only the untainted conversation's mail went out
    new = _records(hospital)[before:]
    assert [(r.action, r.decision) for r in new] == [("send_to_sink", "deny")]
    assert hospital.gateway.labels(turn2) >= {"PHI"}


def test_09_taint_is_kept_per_principal_and_conversation(store, issuer, verifier):
    hospital, factory = _world(store, verifier)
    doctor = factory.from_token(issuer.mint("dr-house", roles=["doctor"], tenant="st-mary"))
    rita = factory.from_token(issuer.mint("rita", roles=["receptionist"], tenant="st-mary"))
    hospital.gateway.call(Session(doctor, "c1"), "get_patient", {"patient_id": "p1"})
    assert hospital.gateway.labels(Session(doctor, "c1")) == {"PUBLIC", "PII", "PHI"}
    assert hospital.gateway.labels(Session(doctor, "c2")) == frozenset()
    assert hospital.gateway.labels(Session(rita, "c1")) == frozenset()
    assert hospital.gateway.call(Session(rita, "c1"), "send_email", BILLING).ok


def test_09_taint_survives_a_restart_of_the_application(database_url, issuer, verifier):
    first = Store(database_url)
    first.migrate()
    hospital, factory = _world(first, verifier)
    token = issuer.mint("dr-house", roles=["doctor"], tenant="st-mary")
    hospital.gateway.call(
        Session(factory.from_token(token), "c1"), "get_patient", {"patient_id": "p1"}
    )
    first.dispose()
    second = Store(database_url)  # a new process: nothing shared but the database
    try:
        hospital, factory = _world(second, verifier)
        result = hospital.gateway.call(
            Session(factory.from_token(token), "c1"), "send_email", BILLING
        )
        assert not result.ok
    finally:
        second.dispose()


def test_09_data_is_not_released_when_its_taint_cannot_be_recorded(store, issuer, verifier):
    hospital, factory = _world(store, verifier)
    session = Session(
        factory.from_token(issuer.mint("dr-house", roles=["doctor"], tenant="st-mary"))
    )
    with store.write() as s:
        s.connection().exec_driver_sql("DROP TABLE genai_conversation_labels")
    result = hospital.gateway.call(session, "get_patient", {"patient_id": "p1"})
    assert not result.ok
    assert result.data is None
    assert _records(hospital)[-1].reason.startswith("conversation state not recorded")


# --- item 13 (and 9): revocation shared between processes, kept over restarts -----------
_REVOKE = textwrap.dedent(
    """
    import sys
    from mamori.genai import ConversationStore
    from mamori.store import Store

    store = Store(sys.argv[1])
    ConversationStore(store).revoke_subject(sys.argv[2], sys.argv[3], reason="left", by="admin")
    store.dispose()
    """
)


def test_13_a_revocation_in_another_process_denies_the_next_call_here(store, issuer, verifier):
    hospital, factory = _world(store, verifier)
    session = Session(
        factory.from_token(issuer.mint("dr-house", roles=["doctor"], tenant="st-mary"))
    )
    assert hospital.gateway.call(session, "get_patient", {"patient_id": "p1"}).ok
    subprocess.run(
        [sys.executable, "-c", _REVOKE, store.url, "https://idp.test", "dr-house"],
        check=True,
        timeout=120,
    )
    result = hospital.gateway.call(session, "get_patient", {"patient_id": "p1"})
    assert result.error == EXPIRED_MESSAGE
    assert hospital.retriever.search(session.ctx, bag_of_words(["note"])[0]) == []
    # The revocation itself is on the store's audit chain, with who did it and why.
    (record,) = [r for r in iter_audit(store) if r.action == "genai.revoke"]
    assert (record.principal, record.reason) == ("admin", "left")


def test_13_a_revocation_survives_a_restart_and_blocks_new_sessions(database_url, issuer, verifier):
    first = Store(database_url)
    first.migrate()
    token = issuer.mint("dr-house", roles=["doctor"], tenant="st-mary")
    principal = (
        ContextFactory(verifier, HOSPITAL_DOMAIN, ConversationStore(first))
        .from_token(token)
        .principal
    )
    ConversationStore(first).revoke_token(principal.issuer, principal.token_id, reason="stolen")
    first.dispose()
    second = Store(database_url)
    try:
        factory = ContextFactory(verifier, HOSPITAL_DOMAIN, ConversationStore(second))
        with pytest.raises(IdentityError, match="revoked"):
            factory.from_token(token)
        # Another token of the same subject is not affected by a token revocation.
        factory.from_token(issuer.mint("dr-house", roles=["doctor"], tenant="st-mary"))
    finally:
        second.dispose()


def test_13_a_revocation_and_its_audit_record_commit_together(store, issuer):
    ConversationStore(store).revoke_subject("https://idp.test", "dr-house", reason="left", by="ops")
    (record,) = [r for r in iter_audit(store) if r.action == "genai.revoke"]
    assert record.principal == "ops"
    assert "dr-house" in record.resource
    assert record.reason == "left"


def test_13_revocations_are_per_issuer(store, issuer, verifier):
    hospital, factory = _world(store, verifier)
    session = Session(
        factory.from_token(issuer.mint("dr-house", roles=["doctor"], tenant="st-mary"))
    )
    hospital.state.revoke_subject("https://other-idp.test", "dr-house")
    assert hospital.gateway.call(session, "get_patient", {"patient_id": "p1"}).ok
    hospital.state.revoke_subject("https://idp.test", "dr-house")
    assert hospital.gateway.call(session, "get_patient", {"patient_id": "p1"}).error == (
        EXPIRED_MESSAGE
    )


def test_09_an_oversized_conversation_id_releases_nothing_and_is_audited(store, issuer, verifier):
    hospital, factory = _world(store, verifier)
    ctx = factory.from_token(issuer.mint("dr-house", roles=["doctor"], tenant="st-mary"))
    result = hospital.gateway.call(Session(ctx, "c" * 300), "get_patient", {"patient_id": "p1"})
    assert not result.ok
    assert result.data is None
    assert _records(hospital)[-1].reason.startswith("conversation state not recorded")
