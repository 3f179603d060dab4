"""The public API other format handlers code against: analyse_one, analyse_stream, hooks."""

from __future__ import annotations

import io
import pickle

import pytest

import mamori.scan.pickle as pk
from mamori.scan.pickle import (
    NOT_LITERAL,
    Call,
    DictV,
    GlobalRef,
    GlobalUse,
    UseKind,
    Value,
    analyse_one,
    analyse_stream,
)


class _OneShot(io.RawIOBase):
    """A stream that cannot seek (a decompressor)."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def test_public_names_are_exported() -> None:
    assert all(hasattr(pk, name) for name in pk.__all__)
    required = {
        "analyse_stream",
        "analyse_one",
        "PickleResult",
        "PickleHooks",
        "GlobalRef",
        "Call",
        "Opaque",
        "NOT_LITERAL",
        "GlobalUse",
        "UseKind",
    }
    assert required <= set(pk.__all__)


@pytest.mark.parametrize("protocol", range(6))
def test_literal_root_of_a_data_only_pickle(protocol: int, fake_ctx) -> None:
    value = {"a": [1, 2.5, "x", b"y", None, True], "b": (1, (2,)), "c": {3}}
    if protocol < 4:  # sets need EMPTY_SET or a REDUCE of builtins.set
        value.pop("c")
    result = analyse_one(io.BytesIO(pickle.dumps(value, protocol=protocol)), fake_ctx())
    if protocol < 3:
        # protocols 0-2 spell bytes as a REDUCE of _codecs.encode: not data-only
        assert result.literal is NOT_LITERAL
    else:
        assert result.literal == value
    assert result.complete


def test_literal_is_not_available_when_the_pickle_calls_something(fake_ctx) -> None:
    result = analyse_one(io.BytesIO(pickle.dumps(range(3), protocol=4)), fake_ctx())
    assert result.literal is NOT_LITERAL
    assert GlobalUse(GlobalRef("builtins", "range"), UseKind.CALLED, 40) in result.globals


@pytest.mark.parametrize("make", [io.BytesIO, lambda d: io.BufferedReader(_OneShot(d))])
def test_analyse_one_leaves_the_stream_right_after_stop(make, fake_ctx) -> None:
    first = pickle.dumps([1, 2, 3], protocol=2)
    data = first + b"RAW-STORAGE-BYTES" + pickle.dumps("x", protocol=2)
    stream = make(data)
    result = analyse_one(stream, fake_ctx(), offset_base=100)
    assert result.end == 100 + len(first)
    assert stream.read(17) == b"RAW-STORAGE-BYTES"
    second = analyse_one(stream, fake_ctx(), offset_base=100 + len(first) + 17)
    assert second.literal == "x"


def test_analyse_stream_offsets_are_relative_to_the_base(fake_ctx) -> None:
    ctx = fake_ctx()
    analyse_stream(io.BytesIO(b"\x80\x04\x8c\x02os\x8c\x06system\x93."), ctx, offset_base=1000)
    assert [f.location.offset for f in ctx.findings] == [1000 + 14]


def test_persistent_ids_expected_by_the_caller_are_quiet(fake_ctx) -> None:
    data = b"\x80\x02(X\x07\x00\x00\x00storagecnumpy\nndarray\nX\x01\x00\x00\x000tQ."
    ctx = fake_ctx()
    result = analyse_one(io.BytesIO(data), ctx, persistent_ids=True)
    assert result.persistent_ids == (("storage", GlobalRef("numpy", "ndarray"), "0"),)
    assert ctx.findings == []


class _Wrapper:
    """Stands in for joblib's NumpyArrayWrapper: raw bytes follow BUILD in the stream."""

    def __init__(self) -> None:
        self.seen: list[tuple[Value, int]] = []

    def on_build(self, target: Value, state: Value, stream, offset: int) -> None:
        assert isinstance(target, Call)
        assert isinstance(state, DictV)
        pairs = dict(state.pairs())
        size = pairs["size"]
        assert isinstance(size, int)
        self.seen.append((pairs["shape"], offset))
        assert stream.tell() == offset
        assert stream.read(size) == b"\x00" * size


def test_build_hook_consumes_inline_array_bytes(fake_ctx) -> None:
    head = (
        b"\x80\x02cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81}(U\x05shapeK\x02K\x03\x86"
        b"U\x04sizeK\x10ub"
    )
    data = head + b"\x00" * 16 + b"."
    hooks = _Wrapper()
    ctx = fake_ctx()
    result = analyse_one(io.BytesIO(data), ctx, hooks=hooks)
    assert hooks.seen == [((2, 3), len(head))]
    assert result.complete
    assert result.end == len(data)


def test_build_hook_sees_a_nonseekable_stream_too(fake_ctx) -> None:
    head = (
        b"\x80\x02cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81}"
        b"(U\x05shapeK\x01\x85U\x04sizeK\x04ub"
    )
    data = head + b"\x00" * 4 + b"." + b"TAIL"
    stream = io.BufferedReader(_OneShot(data))
    hooks = _Wrapper()
    result = analyse_one(stream, fake_ctx(), hooks=hooks)
    assert result.complete
    assert stream.read() == b"TAIL"
