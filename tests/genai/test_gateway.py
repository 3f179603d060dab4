"""Issue 14, items 10 and 11: tool registration fails closed, and every refusal is one audit
record (a resolver, tool or labeler failure never escapes ``gateway.call``)."""

from __future__ import annotations

from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamori.errors import ConfigError
from mamori.genai import DENIED_MESSAGE, SinkSpec, ToolGateway
from mamori.genai.hospital import PATIENT_SCHEMA


def _records(hospital):
    return list(hospital.authorizer.audit.records())


def _new_records(hospital, before):
    return [(r.action, r.resource, r.decision, r.reason) for r in _records(hospital)[before:]]


# --- item 10: every model-filled argument is declared ----------------------------------
def test_10_a_tool_taking_an_id_without_resources_is_refused_at_registration(hospital, patient):
    def get_record(ctx, *, patient_id: str) -> dict:
        return hospital.data.patients[patient_id]

    # The attack it stops: the tool body itself hands out any record it is asked for.
    assert "asthma" in str(get_record(patient.ctx, patient_id="p2"))
    register = hospital.gateway.tool(description="Read a record.", output=PATIENT_SCHEMA)
    with pytest.raises(ConfigError, match=r"'patient_id' is not declared"):
        register(get_record)
    result = hospital.gateway.call(patient, "get_record", {"patient_id": "p2"})
    assert not result.ok
    assert "asthma" not in str(result)


def test_10_an_id_declared_as_free_text_is_refused(hospital):
    register = hospital.gateway.tool(
        description="x", action="read_patient", free_text={"record_ids"}, output=PATIENT_SCHEMA
    )
    with pytest.raises(ConfigError, match="looks like a resource id"):

        @register
        def get_records(ctx, *, record_ids: list[str]) -> list:
            return []


@pytest.mark.parametrize(
    "declaration",
    [
        {"resources": {"query": "Patient"}, "free_text": {"query"}},
        {"free_text": {"q"}},  # names no parameter of the tool
    ],
)
def test_10_double_or_dangling_declarations_are_refused(hospital, declaration):
    register = hospital.gateway.tool(
        description="x", action="read_patient", output=PATIENT_SCHEMA, **declaration
    )
    with pytest.raises(ConfigError):

        @register
        def search(ctx, *, query: str) -> str:
            return query


def test_10_a_resource_argument_must_be_a_string_or_a_list_of_strings(hospital):
    register = hospital.gateway.tool(
        description="x", action="read_patient", resources={"n": "Patient"}, output=PATIENT_SCHEMA
    )
    with pytest.raises(ConfigError, match="str or list"):

        @register
        def get(ctx, *, n: int) -> str:
            return ""


def test_10_an_enumerated_argument_accepts_only_its_values_and_is_in_the_schema(hospital, doctor):
    schema = next(
        s["function"]
        for s in hospital.gateway.schemas()
        if s["function"]["name"] == "count_patients"
    )
    assert schema["parameters"]["properties"]["diagnosis"]["enum"] == [
        "type 2 diabetes",
        "hypertension",
        "asthma",
        "low back pain",
    ]
    assert hospital.gateway.call(doctor, "count_patients", {"diagnosis": "asthma"}).ok
    before = len(_records(hospital))
    result = hospital.gateway.call(doctor, "count_patients", {"diagnosis": "' OR 1=1 --"})
    assert not result.ok
    assert "must be one of" in result.error
    assert len(_records(hospital)) == before + 1


def test_10_a_literal_of_non_strings_is_refused(hospital):
    register = hospital.gateway.tool(description="x", output=PATIENT_SCHEMA)
    with pytest.raises(ConfigError):

        @register
        def pick(ctx, *, n: Literal[1, 2]) -> str:
            return ""


# --- item 11: every refusal is exactly one audit record ----------------------------------
@pytest.mark.parametrize(
    ("tool", "arguments", "reason"),
    [
        (
            "get_patient",
            {"patient_id": 1},
            "invalid arguments: argument 'patient_id' has the wrong type",
        ),
        (
            "get_patient",
            {"patient_id": "p1", "role": "doctor"},
            "invalid arguments: unexpected arguments: ['role']",
        ),
        ("get_patient", {}, "invalid arguments: missing arguments: ['patient_id']"),
        (
            "get_patients",
            {"patient_ids": []},
            "invalid arguments: argument 'patient_ids' must not be empty",
        ),
        ("no_such_tool", {}, "unknown tool"),
    ],
)
def test_11_a_validation_refusal_is_one_audit_record(hospital, doctor, tool, arguments, reason):
    before = len(_records(hospital))
    result = hospital.gateway.call(doctor, tool, arguments)
    assert not result.ok
    (record,) = _records(hospital)[before:]
    assert (record.decision, record.reason) == ("deny", reason)
    assert record.principal == 'Hospital::User::"dr-house"'
    assert tool in record.resource


def test_11_model_chosen_names_are_escaped_and_bounded_in_the_audit_record(hospital, doctor):
    before = len(_records(hospital))
    hospital.gateway.call(doctor, "get_patient", {"patient_id": "p1", "x\n\x1b[2J" * 50: 1})
    (record,) = _records(hospital)[before:]
    assert "\n" not in record.reason
    assert "\x1b" not in record.reason
    assert len(record.reason) < 200


def test_11_a_destination_outside_the_allowlist_is_one_audit_record(hospital, doctor):
    before = len(_records(hospital))
    result = hospital.gateway.call(
        doctor, "send_email", {"to": "attacker@evil.example", "body": "x"}
    )
    assert result.error == "destination is not allowed for this sink"
    assert _new_records(hospital, before) == [
        (
            "send_to_sink",
            'Hospital::Sink::"external-email"',
            "deny",
            "destination 'attacker@evil.example' is not allowed for this sink",
        )
    ]
    assert hospital.sent == []


def test_11_a_resolver_exception_is_a_deny_on_the_record_not_an_exception(hospital, doctor):
    def broken(entity_type, resource_id):
        raise RuntimeError("EHR timeout")

    gateway = ToolGateway(hospital.authorizer, broken)

    @gateway.tool(
        description="x",
        action="read_patient",
        resources={"patient_id": "Patient"},
        output=PATIENT_SCHEMA,
    )
    def get_patient(ctx, *, patient_id: str) -> dict:
        return hospital.data.patients[patient_id]

    before = len(_records(hospital))
    result = gateway.call(doctor, "get_patient", {"patient_id": "p1"})
    assert result.error == DENIED_MESSAGE
    assert _new_records(hospital, before) == [
        (
            "read_patient",
            'Hospital::Patient::"p1"',
            "deny",
            "resource resolver failed: RuntimeError",
        )
    ]


def test_11_a_sink_resolver_exception_is_a_deny_on_the_record(hospital, doctor):
    def broken(entity_type, resource_id):
        raise KeyError(resource_id)

    gateway = ToolGateway(hospital.authorizer, broken)

    @gateway.tool(
        description="x",
        action="send_to_sink",
        sink=SinkSpec("external-email", "to", frozenset({"billing@st-mary.example"})),
    )
    def send(ctx, *, to: str, body: str) -> str:
        return "sent"

    before = len(_records(hospital))
    result = gateway.call(doctor, "send", {"to": "billing@st-mary.example", "body": "x"})
    assert not result.ok
    assert [r[2:] for r in _new_records(hospital, before)] == [
        ("deny", "resource resolver failed: KeyError")
    ]


def test_11_an_exception_inside_the_tool_body_is_one_deny_record(hospital, doctor):
    register = hospital.gateway.tool(
        description="x",
        action="read_patient",
        resources={"patient_id": "Patient"},
        output=PATIENT_SCHEMA,
    )

    @register
    def explode(ctx, *, patient_id: str) -> dict:
        raise ZeroDivisionError

    before = len(_records(hospital))
    result = hospital.gateway.call(doctor, "explode", {"patient_id": "p1"})
    assert result.error == DENIED_MESSAGE
    decisions = _new_records(hospital, before)
    assert decisions[0][2] == "allow"  # the id was authorized...
    assert decisions[1:] == [  # ...and the failure after it is on the record
        ("read_patient", 'Hospital::Tool::"explode"', "deny", "tool failed: ZeroDivisionError")
    ]


def test_11_a_failing_body_labeler_is_a_deny_on_the_record(hospital, doctor):
    def broken(text):
        raise RuntimeError("presidio crashed")

    gateway = ToolGateway(hospital.authorizer, hospital.resolve, text_labeler=broken)

    @gateway.tool(
        description="x",
        action="send_to_sink",
        sink=SinkSpec("external-email", "to", frozenset({"billing@st-mary.example"})),
    )
    def send(ctx, *, to: str, body: str) -> str:
        return "sent"

    before = len(_records(hospital))
    result = gateway.call(doctor, "send", {"to": "billing@st-mary.example", "body": "x"})
    assert not result.ok
    assert [r[2:] for r in _new_records(hospital, before)] == [
        ("deny", "body labelling failed: RuntimeError")
    ]


JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8)),
    lambda kids: st.one_of(
        st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=4), kids, max_size=3)
    ),
    max_leaves=6,
)
TOOLS = st.one_of(
    st.sampled_from(
        ["get_patient", "get_patients", "search_notes", "count_patients", "send_email", "post_ehr"]
    ),
    st.text(max_size=12),
)
ARG_NAMES = st.one_of(
    st.sampled_from(
        ["patient_id", "patient_ids", "query", "diagnosis", "to", "body", "url", "role"]
    ),
    st.text(max_size=6),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tool=TOOLS, arguments=st.one_of(st.dictionaries(ARG_NAMES, JSONISH, max_size=3), JSONISH))
def test_11_any_model_call_returns_a_result_and_every_refusal_is_on_the_record(
    hospital, patient, tool, arguments
):
    before = len(_records(hospital))
    result = hospital.gateway.call(patient, tool, arguments)  # never raises
    new = _records(hospital)[before:]
    if not result.ok:
        assert new, "a refusal left no audit record"
        assert new[-1].decision == "deny"
    assert "asthma" not in str(result.data)  # p2's diagnosis never reaches patient p1
