"""The compact memo: lossless for immutable data, summaries only for unshared data containers."""

from __future__ import annotations

import io
import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.scan.pickle import memo as memo_module
from mamori.scan.pickle.classify import is_loader
from mamori.scan.pickle.machine import Machine
from mamori.scan.pickle.memo import ColdMemo, compact
from mamori.scan.pickle.reader import Window
from mamori.scan.pickle.values import Call, CallKind, DictV, GlobalRef, ListV, SetV

_immutable = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4).map(tuple),
    max_leaves=20,
)


def _machine() -> Machine:
    return Machine(
        Window(io.BytesIO(b""), 0, exact=False),
        max_opcodes=10,
        deadline=lambda: None,
        is_loader=is_loader,
    )


def _compacted(values: dict[int, object]) -> tuple[Machine, ColdMemo]:
    m = _machine()
    m.memo.update(values)  # type: ignore[arg-type]
    values.clear()  # the memo alone holds them now, as in a running analysis
    cold = ColdMemo()
    compact(m, cold)
    return m, cold


@settings(max_examples=300, deadline=None)
@given(st.lists(_immutable, min_size=1, max_size=30))
def test_immutable_data_comes_back_equal_after_compaction(values: list[object]) -> None:
    m, cold = _compacted(dict(enumerate(values)))
    assert not m.memo
    assert m.memo_extra == cold.count == len(values)
    for idx, value in enumerate(values):
        found, back = cold.take(idx)
        assert found
        assert type(back) is type(value)
        assert repr(back) == repr(value)
    assert cold.count == 0


def test_a_taken_slot_is_gone_from_the_cold_store() -> None:
    _, cold = _compacted({0: "a"})
    assert cold.take(0) == (True, "a")
    assert cold.take(0) == (False, None)


def test_an_unshared_data_only_container_is_summarised_by_type_and_size() -> None:
    held = DictV()
    held.extend(["k", 1, "j", (2.0, b"x")])
    slots: dict[int, object] = {0: held}
    del held
    _m, cold = _compacted(slots)
    found, back = cold.take(0)
    assert found
    assert type(back) is DictV
    assert back.dropped == 4
    assert not back.items
    assert cold.summarised == 1


def test_a_container_still_referenced_elsewhere_stays_an_object() -> None:
    shared = ListV()
    shared.extend([1, 2])
    keep = [shared]  # e.g. the stack, or a kept item of another container
    m, cold = _compacted({0: shared})
    assert m.memo[0] is shared
    assert cold.count == 0
    assert keep


def test_a_container_holding_a_global_or_a_call_stays_an_object() -> None:
    ref = GlobalRef("os", "system")
    with_ref = SetV()
    with_ref.extend([ref])
    nested = ListV()
    inner = ListV()
    inner.extend([Call(ref, ("id",), CallKind.REDUCE, 0)])
    nested.extend([inner])
    slots: dict[int, object] = {0: with_ref, 1: nested, 2: ref}
    del inner, with_ref, nested
    m, cold = _compacted(slots)
    assert set(m.memo) == {0, 1, 2}
    assert cold.count == 0


def test_sparse_memo_keys_are_found_after_compaction() -> None:
    keys = [3, 1_000_000, 7, 2**40]
    _m, cold = _compacted({k: f"v{k}" for k in keys})
    for k in keys:
        assert cold.take(k) == (True, f"v{k}")
    assert cold.take(4) == (False, None)


def test_successive_compactions_extend_one_batch() -> None:
    m = _machine()
    cold = ColdMemo()
    for start in range(0, 5000, 1000):
        m.memo.update({i: str(i) for i in range(start, start + 1000)})
        compact(m, cold)
    assert len(cold.batches) == 1
    assert cold.take(4321) == (True, "4321")


def test_compaction_runs_during_a_big_pickle_and_its_findings_are_unchanged(monkeypatch) -> None:
    from mamori.scan.pickle import driver

    monkeypatch.setattr(memo_module, "COMPACT_AFTER", 1000)
    moved: list[int] = []
    original = driver.compact

    def spy(m, cold):
        original(m, cold)
        moved.append(cold.count)

    monkeypatch.setattr(driver, "compact", spy)
    rows = [{"id": i, "name": f"u{i}", "t": (i, "x")} for i in range(30_000)]
    data = pickle.dumps(rows, protocol=4)[:-1]
    # After the rows: fetch a memoized string back (compacted by then) as an import's name.
    data += b"0\x8c\x02os" + b"h\x02" + b"\x93."  # slot 2 is the string "id"
    traces = [
        driver.interpret(
            Window(io.BytesIO(data), 0, exact=False),
            max_opcodes=10**9,
            deadline=lambda: None,
            is_loader=is_loader,
            fast=fast,
        )
        for fast in (True, False)
    ]
    assert max(moved) > 10_000
    for trace in traces:
        assert trace.complete
        assert [ref for ref, _ in trace.uses] == [GlobalRef("os", "id")]
    assert traces[0].uses == traces[1].uses
    assert traces[0].events == traces[1].events == []


# --- shedding plain data under memory pressure -------------------------------------------------


def test_shedding_empties_plain_data_containers_and_keeps_their_counts() -> None:
    from mamori.scan.pickle.memo import shed

    m = _machine()
    inner = ListV()
    inner.extend([1, "a", (2.0, b"x")])
    outer = DictV()
    outer.extend(["k", inner])
    m.stack.append(outer)
    m.memo[0] = inner  # an alias through the memo sees the same summary
    assert shed(m) == 5
    assert (outer.items, outer.dropped) == ([], 2)
    assert m.memo[0] is inner
    assert (inner.items, inner.dropped) == ([], 3)


def test_shedding_keeps_containers_that_hold_globals_or_calls() -> None:
    from mamori.scan.pickle.memo import shed

    m = _machine()
    ref = GlobalRef("os", "system")
    risky = ListV()
    plain = ListV()
    plain.extend([1, 2])
    risky.extend([ref, plain, Call(ref, ("id",), CallKind.REDUCE, 0)])
    m.stack.append(risky)
    assert shed(m) == 2
    assert len(risky.items) == 3
    assert plain.dropped == 2


def test_shedding_during_analysis_keeps_the_findings(monkeypatch) -> None:
    from mamori.scan.pickle import driver
    from mamori.scan.pickle.memo import shed

    original = driver._Budget.check

    def check_and_shed(self):
        original(self)
        shed(self.machine)

    monkeypatch.setattr(driver._Budget, "check", check_and_shed)
    rows = [[i, f"s{i}", {"k": (i, b"b")}] for i in range(40_000)]
    data = pickle.dumps(rows, protocol=4)[:-1]
    # Then a call whose argument is a memoized plain list (slot 2: the first row).
    data += b"0\x8c\x08builtins\x8c\x04eval\x93h\x02\x85R."
    traces = [
        driver.interpret(
            Window(io.BytesIO(data), 0, exact=False),
            max_opcodes=10**9,
            deadline=lambda: None,
            is_loader=is_loader,
            fast=fast,
        )
        for fast in (True, False)
    ]
    assert traces[0].uses == traces[1].uses
    assert traces[0].events == traces[1].events
    assert {ref.dotted for ref, _ in traces[0].uses} == {"builtins.eval"}
