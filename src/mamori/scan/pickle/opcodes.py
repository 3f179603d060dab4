"""The pickle opcode table for protocols 0-5, as data.

Cross-checked against :data:`pickletools.opcodes` by a test, so that a new CPython opcode
cannot slip past the reader unnoticed. The reader dispatches on the opcode byte; this table
gives it the argument encoding and the protocol that introduced each opcode.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = ["ARG_SIZES", "OPCODES", "Arg", "Opcode", "by_code"]


class Arg(enum.Enum):
    """How an opcode's inline argument is encoded in the stream."""

    NONE = "none"
    UINT1 = "uint1"
    UINT2 = "uint2"
    INT4 = "int4"
    UINT4 = "uint4"
    UINT8 = "uint8"
    FLOAT8 = "float8"
    LONG1 = "long1"
    LONG4 = "long4"
    STRING1 = "string1"
    STRING4 = "string4"
    BYTES1 = "bytes1"
    BYTES4 = "bytes4"
    BYTES8 = "bytes8"
    BYTEARRAY8 = "bytearray8"
    UNICODE1 = "unicodestring1"
    UNICODE4 = "unicodestring4"
    UNICODE8 = "unicodestring8"
    DECIMALNL_SHORT = "decimalnl_short"
    DECIMALNL_LONG = "decimalnl_long"
    FLOATNL = "floatnl"
    STRINGNL = "stringnl"
    STRINGNL_NOESCAPE = "stringnl_noescape"
    STRINGNL_NOESCAPE_PAIR = "stringnl_noescape_pair"
    UNICODESTRINGNL = "unicodestringnl"


ARG_SIZES: Final = MappingProxyType(
    {
        Arg.NONE: 0,
        Arg.UINT1: 1,
        Arg.UINT2: 2,
        Arg.INT4: 4,
        Arg.UINT4: 4,
        Arg.UINT8: 8,
        Arg.FLOAT8: 8,
    }
)
"""Fixed argument sizes; arguments not listed are length-prefixed or newline-terminated."""


@dataclass(frozen=True, slots=True)
class Opcode:
    """One opcode: its byte, its pickletools name, argument encoding and first protocol."""

    code: int
    name: str
    arg: Arg
    proto: int


def _o(code: str, name: str, arg: Arg, proto: int) -> Opcode:
    return Opcode(ord(code), name, arg, proto)


OPCODES: Final[tuple[Opcode, ...]] = (
    _o("I", "INT", Arg.DECIMALNL_SHORT, 0),
    _o("J", "BININT", Arg.INT4, 1),
    _o("K", "BININT1", Arg.UINT1, 1),
    _o("M", "BININT2", Arg.UINT2, 1),
    _o("L", "LONG", Arg.DECIMALNL_LONG, 0),
    _o("\x8a", "LONG1", Arg.LONG1, 2),
    _o("\x8b", "LONG4", Arg.LONG4, 2),
    _o("S", "STRING", Arg.STRINGNL, 0),
    _o("T", "BINSTRING", Arg.STRING4, 1),
    _o("U", "SHORT_BINSTRING", Arg.STRING1, 1),
    _o("B", "BINBYTES", Arg.BYTES4, 3),
    _o("C", "SHORT_BINBYTES", Arg.BYTES1, 3),
    _o("\x8e", "BINBYTES8", Arg.BYTES8, 4),
    _o("\x96", "BYTEARRAY8", Arg.BYTEARRAY8, 5),
    _o("\x97", "NEXT_BUFFER", Arg.NONE, 5),
    _o("\x98", "READONLY_BUFFER", Arg.NONE, 5),
    _o("N", "NONE", Arg.NONE, 0),
    _o("\x88", "NEWTRUE", Arg.NONE, 2),
    _o("\x89", "NEWFALSE", Arg.NONE, 2),
    _o("V", "UNICODE", Arg.UNICODESTRINGNL, 0),
    _o("\x8c", "SHORT_BINUNICODE", Arg.UNICODE1, 4),
    _o("X", "BINUNICODE", Arg.UNICODE4, 1),
    _o("\x8d", "BINUNICODE8", Arg.UNICODE8, 4),
    _o("F", "FLOAT", Arg.FLOATNL, 0),
    _o("G", "BINFLOAT", Arg.FLOAT8, 1),
    _o("]", "EMPTY_LIST", Arg.NONE, 1),
    _o("a", "APPEND", Arg.NONE, 0),
    _o("e", "APPENDS", Arg.NONE, 1),
    _o("l", "LIST", Arg.NONE, 0),
    _o(")", "EMPTY_TUPLE", Arg.NONE, 1),
    _o("t", "TUPLE", Arg.NONE, 0),
    _o("\x85", "TUPLE1", Arg.NONE, 2),
    _o("\x86", "TUPLE2", Arg.NONE, 2),
    _o("\x87", "TUPLE3", Arg.NONE, 2),
    _o("}", "EMPTY_DICT", Arg.NONE, 1),
    _o("d", "DICT", Arg.NONE, 0),
    _o("s", "SETITEM", Arg.NONE, 0),
    _o("u", "SETITEMS", Arg.NONE, 1),
    _o("\x8f", "EMPTY_SET", Arg.NONE, 4),
    _o("\x90", "ADDITEMS", Arg.NONE, 4),
    _o("\x91", "FROZENSET", Arg.NONE, 4),
    _o("0", "POP", Arg.NONE, 0),
    _o("2", "DUP", Arg.NONE, 0),
    _o("(", "MARK", Arg.NONE, 0),
    _o("1", "POP_MARK", Arg.NONE, 1),
    _o("g", "GET", Arg.DECIMALNL_SHORT, 0),
    _o("h", "BINGET", Arg.UINT1, 1),
    _o("j", "LONG_BINGET", Arg.UINT4, 1),
    _o("p", "PUT", Arg.DECIMALNL_SHORT, 0),
    _o("q", "BINPUT", Arg.UINT1, 1),
    _o("r", "LONG_BINPUT", Arg.UINT4, 1),
    _o("\x94", "MEMOIZE", Arg.NONE, 4),
    _o("\x82", "EXT1", Arg.UINT1, 2),
    _o("\x83", "EXT2", Arg.UINT2, 2),
    _o("\x84", "EXT4", Arg.INT4, 2),
    _o("c", "GLOBAL", Arg.STRINGNL_NOESCAPE_PAIR, 0),
    _o("\x93", "STACK_GLOBAL", Arg.NONE, 4),
    _o("R", "REDUCE", Arg.NONE, 0),
    _o("b", "BUILD", Arg.NONE, 0),
    _o("i", "INST", Arg.STRINGNL_NOESCAPE_PAIR, 0),
    _o("o", "OBJ", Arg.NONE, 1),
    _o("\x81", "NEWOBJ", Arg.NONE, 2),
    _o("\x92", "NEWOBJ_EX", Arg.NONE, 4),
    _o("\x80", "PROTO", Arg.UINT1, 2),
    _o(".", "STOP", Arg.NONE, 0),
    _o("\x95", "FRAME", Arg.UINT8, 4),
    _o("P", "PERSID", Arg.STRINGNL_NOESCAPE, 0),
    _o("Q", "BINPERSID", Arg.NONE, 1),
)

_BY_CODE: Final = MappingProxyType({op.code: op for op in OPCODES})


def by_code(code: int) -> Opcode | None:
    """Return the opcode for a byte value, or ``None`` when the byte is no opcode."""
    return _BY_CODE.get(code)
