from __future__ import annotations

import dataclasses
import json

import pytest

from mamori.audit import AuditChain, JsonlSink, MemorySink, verify_chain
from mamori.errors import StoreError


def _fill(chain: AuditChain, n: int) -> None:
    for i in range(n):
        chain.record(
            principal="u",
            action="read",
            resource=f"r{i}",
            decision="allow",
            policy_ids=("p",),
            reason="ok",
        )


def test_an_intact_chain_verifies(tmp_path):
    sink = JsonlSink(tmp_path / "a.jsonl")
    _fill(AuditChain(sink), 5)
    assert verify_chain(sink.records()) == 5


def test_a_reopened_file_continues_the_same_chain(tmp_path):
    path = tmp_path / "a.jsonl"
    _fill(AuditChain(JsonlSink(path)), 2)
    _fill(AuditChain(JsonlSink(path)), 2)
    assert verify_chain(JsonlSink(path).records()) == 4


def test_editing_a_record_breaks_the_chain(tmp_path):
    path = tmp_path / "a.jsonl"
    _fill(AuditChain(JsonlSink(path)), 3)
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    first["decision"] = "deny"
    lines[0] = json.dumps(first)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(StoreError, match="record 2"):
        verify_chain(JsonlSink(path).records())


def test_dropping_a_record_breaks_the_chain():
    sink = MemorySink()
    _fill(AuditChain(sink), 3)
    records = list(sink.records())
    with pytest.raises(StoreError):
        verify_chain([records[0], records[2]])


def test_reordering_breaks_the_chain():
    sink = MemorySink()
    _fill(AuditChain(sink), 3)
    a, b, c = sink.records()
    with pytest.raises(StoreError):
        verify_chain([a, dataclasses.replace(c, seq=2), dataclasses.replace(b, seq=3)])


def test_the_hashed_form_carries_every_field_of_a_record():
    # A field left out of to_json() would be outside the hash, so tampering with it would
    # go unnoticed.
    chain = AuditChain(MemorySink())
    record = chain.record(
        principal="u", action="a", resource="r", decision="allow", policy_ids=["p"], reason="x"
    )
    assert set(record.to_json()) == {f.name for f in dataclasses.fields(record)}
    assert type(record).from_json(record.to_json()) == record
