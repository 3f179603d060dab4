"""Property tests: any bytes -> no exception escapes, no hang, and garbage is a finding."""

from __future__ import annotations

import io
import pickle
import pickletools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mamori.scan import scan_bytes
from mamori.scan.pickle import analyse_one, analyse_stream

_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

_MALFORMED = {"MAM-PKL-010", "MAM-PKL-011", "MAM-PKL-012", "MAM-PKL-013", "MAM-LIM-005"}

_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def mutated_pickles(draw: st.DrawFn) -> bytes:
    data = bytearray(pickle.dumps(draw(_values), protocol=draw(st.integers(0, 5))))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif data:
            del data[at]
    return bytes(data)


def _well_formed_by_pickletools(data: bytes) -> bool:
    try:
        pickletools.dis(data, out=io.StringIO())
    except ValueError as exc:
        # pickletools refuses to overwrite a memo key; the real unpicklers allow it.
        return "already defined" in str(exc)
    except Exception:  # noqa: BLE001 - any other rejection by the disassembler counts
        return False
    return True


@_SETTINGS
@given(st.binary(max_size=512))
def test_random_bytes_never_raise_from_scan_bytes(data: bytes) -> None:
    scan_bytes(data)


@_SETTINGS
@given(mutated_pickles())
def test_mutated_pickles_never_raise_and_breakage_is_a_finding(fake_ctx, data: bytes) -> None:
    ctx = fake_ctx()
    result = analyse_one(io.BytesIO(data), ctx)
    if not result.complete:
        assert ctx.rules() & (_MALFORMED | {"MAM-PKL-016"}), ctx.findings
    stream_ctx = fake_ctx()
    analyse_stream(io.BytesIO(data), stream_ctx)
    if not stream_ctx.rules() & _MALFORMED and result.end == len(data):
        # We call it well-formed: CPython's own disassembler must agree.
        assert _well_formed_by_pickletools(data)


@_SETTINGS
@given(_values, st.integers(0, 5))
def test_real_pickles_of_plain_data_are_complete_and_quiet(
    fake_ctx, value: object, protocol: int
) -> None:
    ctx = fake_ctx()
    result = analyse_one(io.BytesIO(pickle.dumps(value, protocol=protocol)), ctx)
    assert result.complete
    assert all(f.rule_id == "MAM-PKL-006" for f in ctx.findings)
