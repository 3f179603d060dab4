"""Malformed streams are findings, never skips, and never exceptions."""

from __future__ import annotations

import io
import pickle
import struct

import pytest

from mamori.findings import Severity, Verdict
from mamori.scan import ScanLimits, ScanPolicy, scan_bytes
from mamori.scan.pickle import analyse_stream


def rules(data: bytes) -> set[str]:
    return {f.rule_id for f in scan_bytes(data).findings}


MALFORMED = {
    "no STOP": (b"\x80\x04K\x01", "MAM-PKL-010"),
    "truncated argument": (b"\x80\x04J\x01\x02", "MAM-PKL-010"),
    "truncated string": (b"\x80\x04\x8c\x10abc", "MAM-PKL-010"),
    "stack underflow": (b"\x80\x04\x86.", "MAM-PKL-010"),
    "MARK missing": (b"\x80\x04K\x01t.", "MAM-PKL-010"),
    "undefined memo key": (b"\x80\x04h\x07.", "MAM-PKL-010"),
    "undefined long memo key": (b"\x80\x04j\x07\x00\x00\x00.", "MAM-PKL-010"),
    "unknown opcode": (b"\x80\x04\xff.", "MAM-PKL-011"),
    "protocol 6": (b"\x80\x06K\x01.", "MAM-PKL-012"),
    "SETITEMS odd items": (b"\x80\x04}(K\x01u.", "MAM-PKL-010"),
    "APPENDS on a dict": (b"\x80\x04}(K\x01e.", "MAM-PKL-010"),
    "empty STOP": (b"\x80\x04.", "MAM-PKL-010"),
    "bad utf-8": (b"\x80\x04\x8c\x01\xff.", "MAM-PKL-010"),
    "bad INT": (b"Ixyz\n.", "MAM-PKL-010"),
    "values left at STOP": (b"\x80\x04K\x01K\x02.", "MAM-PKL-010"),
    "negative LONG4 length": (b"\x80\x02\x8b\xff\xff\xff\xff.", "MAM-PKL-010"),
    "frame longer than the data": (
        b"\x80\x04\x95\x00\x10\x00\x00\x00\x00\x00\x00K\x01.",
        "MAM-PKL-016",
    ),
    "opcode straddles its frame": (
        b"\x80\x04\x95\x02\x00\x00\x00\x00\x00\x00\x00J\x01\x00\x00\x00.",
        "MAM-PKL-016",
    ),
    "frame inside a frame": (
        b"\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00\x95\x01\x00\x00\x00\x00\x00\x00\x00K\x01.",
        "MAM-PKL-016",
    ),
    "garbage after STOP": (pickle.dumps(1, protocol=4) + b"\xfe\xfe\xfe", "MAM-PKL-013"),
    "broken pickle after STOP": (pickle.dumps(1, protocol=4) + b"\x80\x04K", "MAM-PKL-013"),
    "persistent id": (b"\x80\x02U\x01xQ.", "MAM-PKL-015"),
    "text persistent id": (b"Pabc\n.", "MAM-PKL-015"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_stream_is_a_finding(name: str, fake_ctx) -> None:
    data, rule_id = MALFORMED[name]
    ctx = fake_ctx()
    analyse_stream(io.BytesIO(data), ctx)
    assert rule_id in ctx.rules()


@pytest.mark.parametrize("name", [n for n in sorted(MALFORMED) if MALFORMED[n][0][:1] == b"\x80"])
def test_malformed_protocol_2_plus_file_is_detected_and_unsafe_or_noted(name: str) -> None:
    data, rule_id = MALFORMED[name]
    assert rule_id in rules(data)


def test_truncated_real_pickle_is_unsafe() -> None:
    data = pickle.dumps({"a": list(range(100))}, protocol=4)[:-10]
    report = scan_bytes(data)
    assert report.verdict is Verdict.UNSAFE


def test_stacked_valid_pickles_are_reported_once_as_low() -> None:
    data = pickle.dumps(1, protocol=2) + pickle.dumps(2, protocol=4) + pickle.dumps(3)
    found = [(f.rule_id, f.severity) for f in scan_bytes(data).findings]
    assert found == [("MAM-PKL-014", Severity.LOW)]


def test_opcode_limit_is_a_limit_finding(fake_ctx) -> None:
    ctx = fake_ctx(policy=ScanPolicy(limits=ScanLimits(max_pickle_opcodes=10)))
    analyse_stream(io.BytesIO(pickle.dumps(list(range(50)), protocol=4)), ctx)
    assert "MAM-LIM-005" in ctx.rules()


def test_opcode_limit_keeps_findings_from_before_the_limit(fake_ctx) -> None:
    payload = b"\x80\x04\x8c\x02os\x8c\x06system\x93" + b"K\x01" * 100 + b"."
    ctx = fake_ctx(policy=ScanPolicy(limits=ScanLimits(max_pickle_opcodes=20)))
    analyse_stream(io.BytesIO(payload), ctx)
    assert {"MAM-LIM-005", "MAM-PKL-001"} <= ctx.rules()


def test_empty_stream_is_a_finding(fake_ctx) -> None:
    ctx = fake_ctx()
    analyse_stream(io.BytesIO(b""), ctx)
    assert ctx.rules() == {"MAM-PKL-010"}


def test_deadline_is_checked_periodically_not_per_opcode(fake_ctx) -> None:
    ctx = fake_ctx()
    data = pickle.dumps(list(range(300_000)), protocol=4)
    analyse_stream(io.BytesIO(data), ctx)
    assert 1 <= ctx.deadline_calls < 100


def test_huge_declared_bytes_length_does_not_allocate(fake_ctx) -> None:
    ctx = fake_ctx()
    data = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"abc"
    analyse_stream(io.BytesIO(data), ctx)
    assert "MAM-PKL-010" in ctx.rules()


def test_exponential_literal_through_shared_memo_references_is_bounded(fake_ctx) -> None:
    from mamori.scan.pickle import NOT_LITERAL, analyse_one

    # L0 = [0]; L(k+1) = [Lk] * 64 through memo GETs: 64**6 leaves described in ~400 bytes.
    data = b"\x80\x04]K\x00a\x94"
    for level in range(6):
        data += b"0](" + (b"h" + bytes([level])) * 64 + b"e\x94"
    data += b"."
    result = analyse_one(io.BytesIO(data), fake_ctx())
    assert result.complete
    assert result.literal is NOT_LITERAL


def test_deeply_nested_persistent_id_does_not_recurse(fake_ctx) -> None:
    from mamori.scan.pickle import analyse_one

    data = b"\x80\x02K\x01" + b"\x85" * 100_000 + b"Q."
    result = analyse_one(io.BytesIO(data), fake_ctx(), persistent_ids=True)
    assert result.complete
    assert len(result.persistent_ids) == 1
