"""Attack 12 in free text: the Presidio net redacts identifiers the caller may not read."""

from __future__ import annotations

import socket

import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamori.errors import ConfigError
from mamori.genai import ContextFactory, Session, SourceDocument, TrustedIngestor
from mamori.genai.hospital import (
    DOCUMENT_ACL,
    HOSPITAL_DOMAIN,
    build_hospital,
    hospital_text_net,
    synthetic_data,
)
from mamori.genai.textnet import (
    REDACTED_UNKNOWN,
    PresidioTextNet,
    _OfflineEmailRecognizer,
    pattern_recognizer,
)

from .conftest import DIM, bag_of_words

SSN = "536-22-8179"
MRN = "MRN 04401001"  # p1's MRN in synthetic_data


@pytest.fixture(scope="module")
def net():
    return hospital_text_net()


@pytest.fixture
def netted(net):
    return build_hospital(
        bag_of_words, DIM, data=synthetic_data(), text_net=net, text_labeler=net.labels
    )


@pytest.fixture
def as_user(netted, issuer, verifier):
    factory = ContextFactory(verifier, HOSPITAL_DOMAIN, netted.state)

    def make(subject, role, **claims):
        token = issuer.mint(subject, roles=[role], tenant="st-mary", claims=claims)
        return Session(factory.from_token(token))

    return make


def _texts(result) -> str:
    return " ".join(item["text"] for bucket in result.data.values() for item in bucket)


def _add_call_log(hospital, text: str) -> None:
    TrustedIngestor(hospital.client, "notes", bag_of_words, DOCUMENT_ACL).ingest(
        [
            SourceDocument(
                "call-ssn",
                text,
                {
                    "tenant": "st-mary",
                    "patient_id": "p1",
                    "classification": "PII",
                    "care_team": ["dr-house"],
                },
            )
        ]
    )


def test_12_an_mrn_in_a_call_log_is_redacted_for_a_receptionist(netted, as_user):
    result = netted.gateway.call(as_user("rita", "receptionist"), "search_notes", {"query": "MRN"})
    text = _texts(result)
    assert "<PHI:MRN>" in text
    assert "4401001" not in text
    assert "617 555" in text  # a phone number is PII, which a receptionist may read


def test_12_a_doctor_on_the_care_team_sees_the_mrn(netted, as_user):
    result = netted.gateway.call(as_user("dr-house", "doctor"), "search_notes", {"query": "MRN"})
    assert MRN in _texts(result)
    assert "<PHI:" not in _texts(result)


def test_12_an_ssn_in_a_note_body_is_redacted_for_a_receptionist(netted, as_user):
    _add_call_log(netted, f"Call log: patient read out SSN {SSN} for billing; call back.")
    result = netted.gateway.call(
        as_user("rita", "receptionist"), "search_notes", {"query": "SSN billing"}
    )
    text = _texts(result)
    assert "<PHI:US_SSN>" in text
    assert SSN not in text


def test_12_a_doctor_on_the_care_team_sees_the_ssn_and_the_session_is_tainted_phi(netted, as_user):
    _add_call_log(netted, f"Call log: patient read out SSN {SSN} for billing; call back.")
    session = as_user("dr-house", "doctor")
    result = netted.gateway.call(session, "search_notes", {"query": "SSN billing"})
    assert SSN in _texts(result)
    assert "PHI" in netted.gateway.labels(session)


def test_12_a_model_typed_ssn_cannot_leave_through_a_public_sink(netted, as_user):
    session = as_user("rita", "receptionist")
    args = {"to": "billing@st-mary.example", "body": "summary"}
    assert netted.gateway.call(session, "send_email", args).ok
    leaked = netted.gateway.call(session, "send_email", {**args, "body": f"ssn is {SSN}"})
    assert not leaked.ok


def test_the_net_keeps_entities_the_caller_may_read_and_reports_their_labels(net):
    text, labels = net("Reach ana@example.com or +1 617 555 0101.", frozenset({"PII"}))
    assert text == "Reach ana@example.com or +1 617 555 0101."
    assert labels == frozenset({"PII"})


@pytest.mark.parametrize(
    ("sample", "tag"),
    [
        ("card 4111 1111 1111 1111 on file", "<PHI:CREDIT_CARD>"),
        ("IBAN GB82 WEST 1234 5698 7654 32", "<PHI:IBAN_CODE>"),
        (f"SSN {SSN}", "<PHI:US_SSN>"),
        ("chart MRN: 4401001", "<PHI:MRN>"),
    ],
)
def test_checksum_and_pattern_entities_are_redacted_when_unreadable(net, sample, tag):
    text, _ = net(sample, frozenset({"PII", "PUBLIC"}))
    assert tag in text


def test_a_card_number_failing_luhn_is_not_a_card(net):
    text, _ = net("order 4111 1111 1111 1112 shipped", frozenset({"PII"}))
    assert "<PHI:CREDIT_CARD>" not in text


def test_the_net_works_with_the_network_unreachable(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("the text net tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    # Forget the loaded suffix list so that the next lookup has to find one again.
    monkeypatch.setattr(_OfflineEmailRecognizer._EXTRACT, "_extractor", None)
    fresh = hospital_text_net()
    text, labels = fresh("mail ana@clinic.example.co.uk now", frozenset())
    assert text == "mail <PII:EMAIL_ADDRESS> now"
    assert labels == frozenset()


def test_no_spacy_model_is_loaded_or_downloaded(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("a spaCy model load was attempted")

    monkeypatch.setattr(spacy, "load", refuse)
    monkeypatch.setattr(spacy.cli, "download", refuse)
    assert hospital_text_net()("SSN " + SSN, frozenset())[0] == "SSN <PHI:US_SSN>"


def test_an_entity_without_a_label_is_a_configuration_error():
    with pytest.raises(ConfigError, match="ZIP"):
        PresidioTextNet(extra_recognizers=[pattern_recognizer("ZIP", r"\b\d{5}\b")])


def test_a_detection_failure_redacts_the_whole_string(monkeypatch):
    fresh = hospital_text_net()

    def broken(**_kwargs):
        raise RuntimeError("recognizer crashed")

    monkeypatch.setattr(fresh._analyzer, "analyze", broken)
    assert fresh("anything at all", frozenset({"PII", "PHI"})) == (REDACTED_UNKNOWN, frozenset())
    assert fresh.labels("anything") == frozenset({"PII", "PHI"})


def test_overlapping_unreadable_entities_are_redacted_as_one(net):
    # The URL recognizer also matches the e-mail's domain; one tag replaces both.
    text, _ = net("to ana@clinic.example.co.uk and MRN 04401001 end", frozenset())
    assert text == "to <PII:EMAIL_ADDRESS> and <PHI:MRN> end"


SECRETS = [
    ("US_SSN", "PHI", "536-22-8179"),
    ("MRN", "PHI", "MRN 04401003"),
    ("CREDIT_CARD", "PHI", "4111 1111 1111 1111"),
    ("EMAIL_ADDRESS", "PII", "ana@clinic.example.com"),
    ("MEMBER_ID", "PII", "MBR-1003"),
]
FILLER = st.lists(
    st.sampled_from(["patient", "called", "about", "the", "bill", "(p3)", "note:", "re", ";"]),
    max_size=6,
).map(" ".join)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    parts=st.lists(st.tuples(FILLER, st.sampled_from(SECRETS)), min_size=1, max_size=3),
    readable=st.frozensets(st.sampled_from(["PUBLIC", "PII", "PHI"])),
)
def test_no_unreadable_identifier_survives_the_net(net, parts, readable):
    text = " ".join(f"{filler} {secret} ." for filler, (_, _, secret) in parts)
    clean, labels = net(text, readable)
    for _, (entity, label, secret) in parts:
        if label not in readable:
            assert secret not in clean
            assert f"<{label}:{entity}>" in clean
    # A readable identifier may still go if another recognizer also claims it under a label
    # the caller lacks (an MRN's digits parse as a phone number): over-redaction is the safe
    # side. With every label readable nothing changes.
    if readable >= {"PII", "PHI"}:
        assert clean == text
    assert labels <= readable


def test_an_invalid_custom_pattern_is_a_configuration_error():
    with pytest.raises(ConfigError, match="MRN"):
        pattern_recognizer("MRN", r"MRN(")
