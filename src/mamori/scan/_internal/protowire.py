"""A minimal, bounded protobuf wire-format reader (no generated code, no protobuf runtime).

Protobuf messages are sequences of ``(field number, wire type, value)``; see
https://protobuf.dev/programming-guides/encoding/. This reader yields them one level at a
time over a ``memoryview`` without copying: nested messages are read by calling
:func:`iter_fields` on a sub-view. It refuses what ``protobuf`` itself refuses (truncated
values, over-long varints, field number 0, the deprecated group wire types, lengths past the
end) by raising :class:`ProtoError`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

__all__ = ["Field", "ProtoError", "WireType", "iter_fields", "read_varint"]

_MAX_VARINT_BYTES: Final = 10
_MAX_FIELD: Final = (1 << 29) - 1


class ProtoError(ValueError):
    """The bytes are not a well-formed protobuf message; the message says where."""


class WireType(enum.IntEnum):
    """The wire types in use (3 and 4, groups, are deprecated and refused)."""

    VARINT = 0
    I64 = 1
    LEN = 2
    I32 = 5


@dataclass(frozen=True, slots=True)
class Field:
    """One field: ``value`` is an int for numeric wire types, a view for LEN fields.

    ``offset`` is where the field's key starts and ``payload`` where its value starts, both
    relative to the outermost buffer (pass ``payload`` as ``base`` when descending).
    """

    number: int
    wire_type: WireType
    value: int | memoryview
    offset: int
    payload: int

    @property
    def data(self) -> memoryview:
        """The LEN payload; a numeric field here is a schema mismatch (ProtoError)."""
        if not isinstance(self.value, memoryview):
            msg = f"field {self.number} at {self.offset} is not length-delimited"
            raise ProtoError(msg)
        return self.value

    @property
    def number_value(self) -> int:
        """The numeric value; a LEN field here is a schema mismatch (ProtoError)."""
        if isinstance(self.value, memoryview):
            msg = f"field {self.number} at {self.offset} is length-delimited, expected a number"
            raise ProtoError(msg)
        return self.value

    def text(self, limit: int = 1 << 16) -> str:
        """The LEN payload decoded as UTF-8 (replacing bad bytes), cut at ``limit`` bytes."""
        return bytes(self.data[:limit]).decode("utf-8", "replace")


def read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return ``(value, next position)``.

    Raises:
        ProtoError: truncated, or longer than 10 bytes.
    """
    result = 0
    shift = 0
    end = len(buf)
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= end:
            msg = f"truncated varint at {pos}"
            raise ProtoError(msg)
        byte = buf[pos + i]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & ((1 << 64) - 1), pos + i + 1
        shift += 7
    msg = f"varint longer than {_MAX_VARINT_BYTES} bytes at {pos}"
    raise ProtoError(msg)


def iter_fields(buf: memoryview, base: int = 0) -> Iterator[Field]:
    """Yield the fields of one message in ``buf``; ``base`` offsets the reported positions.

    Raises:
        ProtoError: the message is malformed at some point; fields before it were yielded.
    """
    pos = 0
    end = len(buf)
    while pos < end:
        start = pos
        key, pos = read_varint(buf, pos)
        number = key >> 3
        raw_type = key & 7
        if number == 0 or number > _MAX_FIELD:
            msg = f"invalid field number {number} at {base + start}"
            raise ProtoError(msg)
        try:
            wire = WireType(raw_type)
        except ValueError:
            msg = f"unsupported wire type {raw_type} for field {number} at {base + start}"
            raise ProtoError(msg) from None
        value: int | memoryview
        payload = base + pos
        if wire is WireType.VARINT:
            value, pos = read_varint(buf, pos)
        elif wire is WireType.LEN:
            length, pos = read_varint(buf, pos)
            if length > end - pos:
                msg = f"field {number} at {base + start} declares {length} bytes past the end"
                raise ProtoError(msg)
            payload = base + pos
            value = buf[pos : pos + length]
            pos += length
        else:
            width = 8 if wire is WireType.I64 else 4
            if pos + width > end:
                msg = f"truncated fixed-width field {number} at {base + start}"
                raise ProtoError(msg)
            value = int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        yield Field(number, wire, value, base + start, payload)
