"""Memo, stack and memory budgets: a hostile pickle ends in a MAM-LIM finding, never an OOM."""

from __future__ import annotations

import pickle

import pytest

from mamori.findings import Verdict
from mamori.scan import ScanPolicy
from mamori.scan.limits import ScanLimits
from mamori.scan.scanner import scan_bytes


def _scan(data: bytes, **limits: int):
    return scan_bytes(data, "x.pkl", ScanPolicy(limits=ScanLimits(**limits)))


def _memoized_strings(n: int) -> bytes:
    # Distinct string objects, each memoized: the shape of the 12 M-string acceptance file.
    return pickle.dumps([f"{i % 3844:02}"[:2] + "" for i in range(n)], protocol=4)


def test_memoizing_more_entries_than_the_budget_is_an_unsafe_limit_finding() -> None:
    report = _scan(_memoized_strings(50_000), max_pickle_memo=10_000)
    assert report.verdict is Verdict.UNSAFE
    assert [f.rule_id for f in report.findings] == ["MAM-LIM-007"]


def test_memoizing_within_the_budget_is_no_finding() -> None:
    report = _scan(_memoized_strings(5_000), max_pickle_memo=10_000)
    assert report.verdict is Verdict.SAFE
    assert not report.findings


def test_a_mark_bomb_past_the_stack_budget_is_an_unsafe_limit_finding() -> None:
    data = b"\x80\x04" + b"(" * 200_000 + b"N."
    report = _scan(data, max_pickle_stack=50_000)
    assert report.verdict is Verdict.UNSAFE
    assert "MAM-LIM-008" in {f.rule_id for f in report.findings}


def test_values_piling_up_on_the_stack_past_the_budget_are_a_limit_finding() -> None:
    data = b"\x80\x04(" + b"K\x01" * 150_000 + b"t."
    report = _scan(data, max_pickle_stack=100_000)
    assert "MAM-LIM-008" in {f.rule_id for f in report.findings}
    assert report.verdict is Verdict.UNSAFE


def test_memory_growth_past_the_budget_is_an_unsafe_limit_finding() -> None:
    # 400 k distinct big integers held on the stack (a MARK frame): tens of MiB of objects.
    big = b"\x8a\x09" + b"\xff" * 8 + b"\x01"
    data = b"\x80\x04(" + big * 400_000 + b"t."
    report = _scan(data, max_pickle_memory=1 << 20)
    assert "MAM-LIM-009" in {f.rule_id for f in report.findings}
    assert report.verdict is Verdict.UNSAFE


def test_a_stop_by_a_limit_inside_a_frame_reports_only_the_limit() -> None:
    data = _memoized_strings(50_000)
    assert data[2] == 0x95  # protocol 4 frames the stream
    report = _scan(data, max_pickle_memo=100)
    assert [f.rule_id for f in report.findings] == ["MAM-LIM-007"]


@pytest.mark.parametrize("field", ["max_pickle_memo", "max_pickle_stack", "max_pickle_memory"])
def test_a_zero_pickle_budget_is_rejected(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ScanLimits(**{field: 0})


def test_a_memo_get_after_the_budget_check_still_finds_the_global() -> None:
    # The dangerous call comes after many memoized strings; within budget it is still seen.
    body = pickle.dumps([f"s{i}" for i in range(70_000)], protocol=4)[:-1]
    call = b"0\x8c\x02os\x8c\x06system\x93\x8c\x02id\x85R."
    report = _scan(body + call)
    assert "MAM-PKL-001" in {f.rule_id for f in report.findings}
