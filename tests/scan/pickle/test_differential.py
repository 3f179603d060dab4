"""The fast path gives exactly the reference interpreter's results (Hypothesis differential)."""

from __future__ import annotations

import contextlib
import io
import pickle
import struct
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.scan.pickle import hot
from mamori.scan.pickle.classify import is_loader
from mamori.scan.pickle.driver import interpret
from mamori.scan.pickle.reader import Window
from mamori.scan.pickle.trace import Trace
from mamori.scan.pickle.values import to_literal

_SETTINGS = settings(max_examples=400, deadline=None)


_LOOPS = {"pure-python": hot.pure_fast_loop}
if hot.SCANNER_BUILD == "compiled":
    _LOOPS["compiled"] = hot.fast_loop


@contextlib.contextmanager
def _hot_loop(loop: Callable[..., bool]) -> Iterator[None]:
    """Run the fast path with this implementation of the hot loop everywhere it is used."""
    from mamori.scan.pickle import driver, lazy, template

    saved = (driver.fast_loop, lazy.fast_loop, template.fast_loop)
    driver.fast_loop = lazy.fast_loop = template.fast_loop = loop
    try:
        yield
    finally:
        driver.fast_loop, lazy.fast_loop, template.fast_loop = saved


def _run(data: bytes, *, fast: bool, max_opcodes: int = 10**9, max_memo: int = 1 << 62) -> Trace:
    return interpret(
        Window(io.BytesIO(data), 0, exact=False),
        max_opcodes=max_opcodes,
        deadline=lambda: None,
        is_loader=is_loader,
        fast=fast,
        max_memo=max_memo,
    )


def _same(data: bytes, max_opcodes: int = 10**9, max_memo: int = 1 << 62) -> None:
    """The reference interpreter and the fast path, with every hot loop built, agree."""
    b = _run(data, fast=False, max_opcodes=max_opcodes, max_memo=max_memo)
    for loop in _LOOPS.values():
        with _hot_loop(loop):
            a = _run(data, fast=True, max_opcodes=max_opcodes, max_memo=max_memo)
        assert a.events == b.events
        assert a.uses == b.uses
        assert (a.complete, a.end, a.opcodes, a.pure, a.protocol) == (
            b.complete,
            b.end,
            b.opcodes,
            b.pure,
            b.protocol,
        )
        assert repr(to_literal(a.root)) == repr(to_literal(b.root))
        assert repr(a.persistent_ids) == repr(b.persistent_ids)


def _sbu(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")
    return b"\x8c" + bytes([len(raw)]) + raw


# Opcode tokens with valid arguments, including the code-running and malformed ones, so that
# sequences exercise every way the fast loop can hand over to the reference path.
_TOKENS = st.one_of(
    st.integers(0, 255).map(lambda n: b"K" + bytes([n])),
    st.integers(0, 65535).map(lambda n: b"M" + struct.pack("<H", n)),
    st.integers(-(2**31), 2**31 - 1).map(lambda n: b"J" + struct.pack("<i", n)),
    st.floats(allow_nan=False).map(lambda f: b"G" + struct.pack(">d", f)),
    st.text(max_size=6).map(_sbu),
    st.binary(max_size=4).map(lambda b: b"\x8c" + bytes([len(b)]) + b),  # maybe bad UTF-8
    st.text(max_size=4).map(lambda t: b"X" + struct.pack("<I", len(t.encode())) + t.encode()),
    st.binary(max_size=4).map(lambda b: b"C" + bytes([len(b)]) + b),
    st.binary(max_size=4).map(lambda b: b"U" + bytes([len(b)]) + b),
    st.binary(max_size=3).map(lambda b: b"\x8a" + bytes([len(b)]) + b),
    st.integers(0, 6).map(lambda n: b"h" + bytes([n])),
    st.integers(0, 6).map(lambda n: b"q" + bytes([n])),
    st.integers(0, 6).map(lambda n: b"j" + struct.pack("<I", n)),
    st.integers(0, 6).map(lambda n: b"r" + struct.pack("<I", n)),
    st.sampled_from(
        [
            b"\x94",
            b"(",
            b"e",
            b"u",
            b"\x90",
            b"a",
            b"s",
            b"]",
            b"}",
            b")",
            b"\x8f",
            b"\x85",
            b"\x86",
            b"\x87",
            b"t",
            b"l",
            b"d",
            b"\x91",
            b"N",
            b"\x88",
            b"\x89",
            b"0",
            b"1",
            b"2",
            b"R",
            b"b",
            b"\x81",
            b"\x93",
            b"Q",
        ]
    ),
    st.sampled_from(
        [_sbu("os") + _sbu("system") + b"\x93", b"cmypkg\nThing\n", _sbu("x") + _sbu("y")]
    ),
    st.integers(1, 40).map(lambda n: b"\x95" + struct.pack("<Q", n)),
)


@_SETTINGS
@given(st.lists(_TOKENS, max_size=40), st.booleans())
def test_random_opcode_programs_agree(tokens: list[bytes], stop: bool) -> None:
    _same(b"\x80\x04" + b"".join(tokens) + (b"." if stop else b""))


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.tuples(inner, inner)
        | st.tuples(inner, inner, inner)
        | st.frozensets(st.integers(), max_size=3)
        | st.sets(st.text(max_size=3), max_size=3)
        | st.dictionaries(st.text(max_size=4), inner, max_size=6)
    ),
    max_leaves=40,
)


@_SETTINGS
@given(_values, st.integers(0, 5))
def test_real_pickles_agree(value: object, protocol: int) -> None:
    _same(pickle.dumps(value, protocol=protocol))


@_SETTINGS
@given(_values, st.integers(0, 5), st.integers(1, 60))
def test_opcode_limit_agrees(value: object, protocol: int, limit: int) -> None:
    _same(pickle.dumps(value, protocol=protocol), max_opcodes=limit)


@_SETTINGS
@given(_values, st.integers(0, 5), st.integers(0, 12))
def test_memo_limit_is_reported_at_the_same_opcode(value: object, protocol: int, cap: int) -> None:
    _same(pickle.dumps(value, protocol=protocol), max_memo=cap)


@settings(max_examples=200, deadline=None)
@given(st.lists(_TOKENS, max_size=40), st.integers(0, 4))
def test_memo_limit_in_random_programs_agrees(tokens: list[bytes], cap: int) -> None:
    _same(b"\x80\x04" + b"".join(tokens) + b".", max_memo=cap)


def test_the_compiled_hot_loop_is_built_where_a_compiler_is_present() -> None:
    # make up / pip install -e build it (hatch_build.py); a missing build is said, not hidden.
    import shutil

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler on this machine: the pure-Python loop is the one that runs")
    assert hot.SCANNER_BUILD == "compiled", "run `make ext` (or pip install -e .) to build it"


def test_large_pickle_crossing_window_and_frame_boundaries_agrees() -> None:
    value = {f"k{i}": [i, float(i), f"s{i}", (i, i + 1), "é"] for i in range(40_000)}
    for protocol in (2, 4):
        _same(pickle.dumps(value, protocol=protocol))


# --- template runs and lazy blocks -----------------------------------------------------------
# With a tiny keep cap, small pickles already have "capped" containers, so the template
# matcher, lazy blocks and their materialization all run on Hypothesis-sized inputs.

_scalars = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=6),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.none(),
    st.booleans(),
)
_shapes = st.sampled_from(
    [
        lambda a, b: [a, b, (a, b)],
        lambda a, b: (a, b),
        lambda a, b: {"x": a, "y": [b]},
        lambda a, _b: a,
        lambda a, b: [a, [b, (a,)]],
    ]
)


@st.composite
def repetitive_pickles(draw: st.DrawFn) -> bytes:
    shape = draw(_shapes)
    n = draw(st.integers(0, 40))
    pairs = [(draw(_scalars), draw(_scalars)) for _ in range(draw(st.integers(1, 3)))]
    as_dict = draw(st.booleans())
    if as_dict:
        value: object = {f"k{i}": shape(*pairs[i % len(pairs)]) for i in range(n)}
    else:
        value = [shape(*pairs[i % len(pairs)]) for i in range(n)]
    # The pure-Python pickler with tiny batches: many MARK ... SETITEMS batches per container.
    data = bytearray(pickle._dumps(value, protocol=draw(st.sampled_from([2, 3, 4, 5]))))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(2, max(len(data) - 1, 2)))
        data[at:at] = draw(_TOKENS)
    return bytes(data)


@contextlib.contextmanager
def _tiny_caps(*, frame_size: int | None = None, span: int | None = None) -> Iterator[None]:
    """Keep 2 items per container, batch 3 items, try templates every 2 opcodes.

    ``frame_size`` makes the pure-Python pickler cut protocol 4+ frames that small (so frames
    end inside entries); ``span`` bounds each regex pass of a template run to that many bytes.
    """
    from mamori.scan.pickle import driver, template, values

    saved = (
        values.MAX_KEPT_ITEMS,
        driver._CHUNK,
        template._MIN_RUN,
        template._SPAN,
        pickle._Pickler._BATCHSIZE,  # type: ignore[attr-defined]
        pickle._Framer._FRAME_SIZE_TARGET,  # type: ignore[attr-defined]
    )
    values.MAX_KEPT_ITEMS, driver._CHUNK, template._MIN_RUN = 2, 2, 1
    template._SPAN = span or saved[3]
    pickle._Pickler._BATCHSIZE = 3  # type: ignore[attr-defined]
    pickle._Framer._FRAME_SIZE_TARGET = frame_size or saved[5]  # type: ignore[attr-defined]
    try:
        yield
    finally:
        values.MAX_KEPT_ITEMS, driver._CHUNK, template._MIN_RUN, template._SPAN = saved[:4]
        pickle._Pickler._BATCHSIZE = saved[4]  # type: ignore[attr-defined]
        pickle._Framer._FRAME_SIZE_TARGET = saved[5]  # type: ignore[attr-defined]


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_template_runs_agree_with_the_reference(data: st.DataObject) -> None:
    with _tiny_caps():
        _same(data.draw(repetitive_pickles()))


@settings(max_examples=400, deadline=None)
@given(st.data(), st.integers(1, 80))
def test_template_runs_split_into_short_regex_spans_agree(data: st.DataObject, span: int) -> None:
    # Units that end exactly at a span's bound, or straddle it, must be found again by the
    # next span (the unit's lookahead must see the real next opcode).
    with _tiny_caps(span=span):
        _same(data.draw(repetitive_pickles()))


@settings(max_examples=400, deadline=None)
@given(st.data(), st.integers(4, 120))
def test_template_runs_resuming_after_frames_inside_entries_agree(
    data: st.DataObject, frame_size: int
) -> None:
    # Small frames end in the middle of entries: the fast loop stops at each closer that
    # returns to the capped batch so that a template run can resume at the next entry.
    with _tiny_caps(frame_size=frame_size):
        _same(data.draw(repetitive_pickles()))


def test_template_runs_happen_with_tiny_caps(monkeypatch) -> None:
    from mamori.scan.pickle import driver

    calls: list[bool] = []
    original = driver.attempt

    def spy(m):
        done = original(m)
        calls.append(done)
        return done

    monkeypatch.setattr(driver, "attempt", spy)
    with _tiny_caps():
        for protocol in (2, 4):
            value = {f"k{i}": [i, (i, "x")] for i in range(30)}
            _same(pickle._dumps(value, protocol=protocol))  # type: ignore[attr-defined]
    assert sum(calls) >= 4


def test_template_run_is_used_on_a_big_batch(monkeypatch) -> None:
    from mamori.scan.pickle import driver

    value = {f"k{i}": [i, float(i), f"s{i}", (i, i + 1)] for i in range(20_000)}
    data = pickle.dumps(value, protocol=4)
    calls: list[bool] = []
    original = driver.attempt

    def spy(m):
        done = original(m)
        calls.append(done)
        return done

    monkeypatch.setattr(driver, "attempt", spy)
    _same(data)
    assert sum(calls) > 10


def test_memo_get_into_a_lazy_run_materializes_it(monkeypatch) -> None:
    from mamori.scan.pickle import lazy

    data = pickle.dumps([f"s{i}" for i in range(6000)], protocol=4)[:-1]  # without STOP
    # POP the list, then LONG_BINGET slot 5900: a string memoized inside a lazy run.
    probe = data + b"0j" + struct.pack("<I", 5900) + b"."
    _same(probe)
    built: list[object] = []
    original = lazy.materialize

    def spy(m, block):
        built.append(block)
        original(m, block)

    monkeypatch.setattr(lazy, "materialize", spy)
    assert _run(probe, fast=True).root == "s5899"
    assert built


def test_template_runs_resume_at_the_next_entry_after_a_frame(monkeypatch) -> None:
    from mamori.scan.pickle import driver

    value = {f"k{i}": [i, float(i), f"s{i}", (i, i + 1)] for i in range(20_000)}
    data = pickle.dumps(value, protocol=4)  # ~15 frames, each ending inside an entry
    looped: list[tuple[int, int]] = []
    original = driver.fast_loop

    def spy(m, chunk=None, **kwargs):
        start, before = m.w.offset, m.trace.opcodes
        done = original(m, chunk, **kwargs)
        looped.append((start, m.trace.opcodes - before))
        return done

    monkeypatch.setattr(driver, "fast_loop", spy)
    trace = _run(data, fast=True)
    # The first 3000 entries (three batches, up to the one that fills the keep cap) are built
    # one opcode at a time; after that, only the few opcodes of the entry a FRAME cuts (and
    # the batch boundaries) go through the tight loop, not a whole chunk per frame.
    late = sum(ops for start, ops in looped if start > len(data) // 4)
    assert late < 12 * 64
    assert trace.opcodes == _run(data, fast=False).opcodes


# --- the whole sample corpus -------------------------------------------------------------------


def _findings(path) -> list[tuple[str, str, str, str | None]]:
    from mamori.scan import scan_path

    report = scan_path(path)
    return sorted((f.rule_id, str(f.location), f.message, f.evidence) for f in report.findings)


@pytest.mark.xdist_group("corpus")
def test_every_corpus_sample_gets_identical_findings_from_every_path(tmp_path, monkeypatch) -> None:
    from mamori.scan.pickle import driver
    from mamori.testing import all_samples, build_corpus, missing_needs

    build_corpus(tmp_path)
    samples = [s for s in all_samples() if not missing_needs(s)]
    assert len(samples) > 50
    for sample in samples:
        path = tmp_path / sample.relpath
        fast = dict.fromkeys(_LOOPS)
        for name, loop in _LOOPS.items():
            with _hot_loop(loop):
                fast[name] = _findings(path)  # type: ignore[assignment]
        with monkeypatch.context() as patch:
            patch.setattr(driver, "fast_path", lambda _m: None)  # the reference alone
            reference = _findings(path)
        for name, found in fast.items():
            assert found == reference, f"{sample.name}: {name} differs from the reference"


# --- template units that GET memoized values -------------------------------------------------


def _rows(n: int) -> list[dict[str, object]]:
    return [{"id": i, "name": f"u{i}", "score": i * 0.5, "ok": i % 3 == 0} for i in range(n)]


def test_rows_whose_keys_are_memo_gets_run_as_templates(monkeypatch) -> None:
    from mamori.scan.pickle import driver

    calls: list[bool] = []
    original = driver.attempt

    def spy(m):
        done = original(m)
        calls.append(done)
        return done

    monkeypatch.setattr(driver, "attempt", spy)
    _same(pickle.dumps(_rows(20_000), protocol=4))
    assert sum(calls) > 3


def test_a_get_into_a_run_that_gets_keys_materializes_it_exactly() -> None:
    data = pickle.dumps(_rows(9000), protocol=4)[:-1]
    # POP the list; GET a row dict memoized inside a template run (slot 2 * 8000 + ...).
    _same(data + b"0j" + struct.pack("<I", 16_001) + b".")
    _same(data + b"0j" + struct.pack("<I", 16_000) + b".")


def test_a_put_over_a_slot_the_run_got_does_not_change_the_materialized_values() -> None:
    data = pickle.dumps(_rows(9000), protocol=4)[:-1]
    # Overwrite the "name" key's slot with a call result, then GET a row from the run.
    overwrite = b"\x8c\x02os\x8c\x06getcwd\x93)Rr" + struct.pack("<I", 3) + b"0"
    probe = data + b"0" + overwrite + b"j" + struct.pack("<I", 16_001) + b"."
    _same(probe)
    assert _run(probe, fast=True).root is not None


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_template_runs_with_gets_and_bools_agree(data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 30))
    keys = data.draw(st.lists(st.text(max_size=3), min_size=1, max_size=3, unique=True))
    rows = [{k: data.draw(_scalars) for k in keys} | {"b": i % 2 == 0} for i in range(n)]
    with _tiny_caps():
        raw = bytearray(pickle._dumps(rows, protocol=data.draw(st.sampled_from([2, 3, 4, 5]))))
        for _ in range(data.draw(st.integers(0, 2))):
            at = data.draw(st.integers(2, max(len(raw) - 1, 2)))
            raw[at:at] = data.draw(_TOKENS)
        _same(bytes(raw))
