"""A tiny pickle assembler: opcode bytes for samples the pickle module cannot produce.

Only *writes* opcodes. Nothing here (or anywhere in the corpus) unpickles: the samples are
hostile by design and the corpus exists to be scanned, never loaded.
See https://github.com/python/cpython/blob/3.11/Lib/pickletools.py for the opcode reference.
"""

from __future__ import annotations

import struct

__all__ = [
    "BINGET",
    "BINPUT",
    "BUILD",
    "EMPTY_DICT",
    "EMPTY_TUPLE",
    "MARK",
    "MEMOIZE",
    "NEWOBJ",
    "NEWOBJ_EX",
    "NONE",
    "POP",
    "REDUCE",
    "SETITEM",
    "STACK_GLOBAL",
    "STOP",
    "TUPLE",
    "TUPLE1",
    "TUPLE2",
    "TUPLE3",
    "binbytes",
    "binint",
    "call",
    "frame",
    "global0",
    "inject_after_proto",
    "proto",
    "stack_global",
    "string0",
    "unicode",
]

MARK = b"("
STOP = b"."
POP = b"0"
NONE = b"N"
REDUCE = b"R"
BUILD = b"b"
TUPLE = b"t"
EMPTY_TUPLE = b")"
EMPTY_DICT = b"}"
SETITEM = b"s"
TUPLE1 = b"\x85"
TUPLE2 = b"\x86"
TUPLE3 = b"\x87"
NEWOBJ = b"\x81"
NEWOBJ_EX = b"\x92"
STACK_GLOBAL = b"\x93"
MEMOIZE = b"\x94"
BINPUT = b"q"
BINGET = b"h"


def proto(version: int) -> bytes:
    """PROTO opcode."""
    return b"\x80" + bytes([version])


def frame(length: int) -> bytes:
    """FRAME opcode announcing ``length`` bytes (protocol 4+)."""
    return b"\x95" + struct.pack("<Q", length)


def unicode(text: str) -> bytes:
    """SHORT_BINUNICODE or BINUNICODE, whichever fits."""
    data = text.encode()
    if len(data) < 256:  # noqa: PLR2004 - SHORT_BINUNICODE's one-byte length
        return b"\x8c" + bytes([len(data)]) + data
    return b"X" + struct.pack("<I", len(data)) + data


def string0(text: str) -> bytes:
    """Protocol 0 STRING: a quoted repr on one line."""
    return b"S" + repr(text).encode() + b"\n"


def binbytes(data: bytes) -> bytes:
    """SHORT_BINBYTES or BINBYTES (protocol 3+), whichever fits."""
    if len(data) < 256:  # noqa: PLR2004 - SHORT_BINBYTES's one-byte length
        return b"C" + bytes([len(data)]) + data
    return b"B" + struct.pack("<I", len(data)) + data


def binint(value: int) -> bytes:
    """BININT1 / BININT as needed."""
    if 0 <= value < 256:  # noqa: PLR2004 - BININT1 range
        return b"K" + bytes([value])
    return b"J" + struct.pack("<i", value)


def global0(module: str, name: str) -> bytes:
    """Protocol 0 GLOBAL: ``c``, module, newline, name, newline."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def stack_global(module: str, name: str) -> bytes:
    """Two strings then STACK_GLOBAL, as pickle protocol 4 writes a global."""
    return unicode(module) + unicode(name) + STACK_GLOBAL


def call(callable_ops: bytes, *args: bytes) -> bytes:
    """Push a callable, a tuple of already-encoded ``args``, then REDUCE."""
    return callable_ops + MARK + b"".join(args) + TUPLE + REDUCE


def inject_after_proto(pickled: bytes, payload: bytes) -> bytes:
    """Insert ``payload`` ops (which leave one value) plus POP right after the PROTO opcode.

    This is how public proof-of-concepts poison a real model's ``data.pkl``: the payload runs
    first and the model still loads (fickling ``example/pytorch_poc.py``). Only unframed
    streams (protocol 2, what ``torch.save`` writes) are accepted, because a FRAME length
    would no longer match.
    """
    if pickled[:1] != b"\x80" or pickled[2:3] == b"\x95":
        msg = "inject_after_proto needs an unframed protocol 2+ pickle"
        raise ValueError(msg)
    return pickled[:2] + payload + POP + pickled[2:]
