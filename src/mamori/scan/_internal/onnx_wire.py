"""A streaming protobuf rewriter that drops ONNX tensor bytes before parsing the model.

``onnx.ModelProto.FromString`` needs the whole file in memory, so a 2 GB model would cost 2 GB
of RAM. This module walks the protobuf wire format from a stream, knows which fields of the
ONNX schema (``onnx/onnx.proto``) hold sub-messages, and replaces every large
``TensorProto.raw_data`` with a short per-scan token whose real length it remembers. The
result is a small, valid ModelProto that the real protobuf parser can check, while memory
stays bounded by the model's *structure*, not its weights.

Only the wire format is interpreted here; nothing is decoded into objects that could run.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Final

__all__ = ["StrippedModel", "WireError", "WireLimit", "strip_model"]

# message name -> {field number: sub-message name}; fields not listed are copied verbatim.
_SCHEMA: Final[dict[str, dict[int, str]]] = {
    "Model": {7: "Graph", 20: "TrainingInfo", 25: "Function"},
    "Graph": {1: "Node", 5: "Tensor", 15: "SparseTensor"},
    "Node": {5: "Attribute"},
    "Attribute": {
        5: "Tensor",
        6: "Graph",
        10: "Tensor",
        11: "Graph",
        22: "SparseTensor",
        23: "SparseTensor",
    },
    "Tensor": {},
    "SparseTensor": {1: "Tensor", 2: "Tensor"},
    "TrainingInfo": {1: "Graph", 2: "Graph"},
    "Function": {7: "Node", 11: "Attribute"},
}
_RAW_DATA: Final = 9  # TensorProto.raw_data
_STRIP_ABOVE: Final = 256
_VARINT: Final = 0
_I64: Final = 1
_LEN: Final = 2
_I32: Final = 5


class WireError(Exception):
    """The bytes are not a well-formed protobuf message."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class WireLimit(Exception):  # noqa: N818 - a limit, reported as a finding by the caller
    """A size or nesting limit was hit; ``kind`` is ``"size"`` or ``"depth"``."""

    def __init__(self, kind: str, message: str, offset: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.offset = offset


@dataclass(slots=True)
class StrippedModel:
    """The rewritten model and the real lengths of the raw_data fields it dropped."""

    data: bytes
    token_prefix: bytes
    lengths: list[int] = field(default_factory=list)

    def raw_length(self, raw: bytes) -> int:
        """The original length of a ``raw_data`` value as it appears in the stripped model."""
        if len(raw) == len(self.token_prefix) + 8 and raw.startswith(self.token_prefix):
            index = int.from_bytes(raw[len(self.token_prefix) :], "little")
            if index < len(self.lengths):
                return self.lengths[index]
        return len(raw)


@dataclass(slots=True)
class _Stripper:
    stream: IO[bytes]
    max_kept: int
    max_depth: int
    out: StrippedModel
    pos: int = 0
    tick: Callable[[], None] = lambda: None
    kept: int = 0
    fields: int = 0

    def read(self, n: int, end: int) -> bytes:
        if n > end - self.pos:
            raise WireError("field runs past the end of its message", self.pos)
        data = self.stream.read(n)
        if len(data) != n:
            raise WireError("truncated", self.pos)
        self.pos += n
        return data

    def keep(self, n: int) -> None:
        self.kept += n
        if self.kept > self.max_kept:
            raise WireLimit(
                "size",
                f"model structure exceeds {self.max_kept} bytes without tensor data",
                self.pos,
            )

    def varint(self, end: int) -> tuple[int, bytes]:
        raw = bytearray()
        value = 0
        for shift in range(0, 70, 7):
            byte = self.read(1, end)[0]
            raw.append(byte)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value, bytes(raw)
        raise WireError("varint longer than 10 bytes", self.pos)

    def message(self, kind: str, end: int, depth: int) -> bytes:
        if depth > self.max_depth:
            raise WireLimit("depth", f"messages nested deeper than {self.max_depth}", self.pos)
        schema = _SCHEMA[kind]
        parts: list[bytes] = []
        while self.pos < end:
            self.fields += 1
            if self.fields % 65536 == 0:
                self.tick()
            tag, tag_raw = self.varint(end)
            number, wire = tag >> 3, tag & 7
            if number == 0:
                raise WireError("field number 0", self.pos)
            parts.append(tag_raw)
            self.keep(len(tag_raw) + 10)
            if wire == _VARINT:
                parts.append(self.varint(end)[1])
            elif wire == _I64:
                parts.append(self.read(8, end))
            elif wire == _I32:
                parts.append(self.read(4, end))
            elif wire == _LEN:
                length, _ = self.varint(end)
                if length > end - self.pos:
                    raise WireError("length-delimited field runs past its message", self.pos)
                parts.append(self._payload(kind, schema, number, length, depth))
            else:
                msg = f"unsupported wire type {wire}"
                raise WireError(msg, self.pos)
        return b"".join(parts)

    def _payload(
        self, kind: str, schema: dict[int, str], number: int, length: int, depth: int
    ) -> bytes:
        sub = schema.get(number)
        if sub is not None:
            body = self.message(sub, self.pos + length, depth + 1)
        elif kind == "Tensor" and number == _RAW_DATA and length > _STRIP_ABOVE:
            self.stream.seek(length, os.SEEK_CUR)
            self.pos += length
            body = self.out.token_prefix + struct.pack("<Q", len(self.out.lengths))
            self.out.lengths.append(length)
        else:
            self.keep(length)
            body = self.read(length, self.pos + length)
        return _encode_varint(len(body)) + body


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def strip_model(
    stream: IO[bytes],
    size: int,
    *,
    max_kept: int,
    max_depth: int,
    tick: Callable[[], None] = lambda: None,
) -> StrippedModel:
    """Rewrite a serialized ModelProto of ``size`` bytes, dropping large tensor ``raw_data``.

    Raises:
        WireError: the bytes are not well-formed protobuf.
        WireLimit: the structure is larger than ``max_kept`` bytes or nests too deeply.
    """
    out = StrippedModel(b"", b"\x00mamori-raw:" + os.urandom(8))
    stripper = _Stripper(stream, max_kept, max_depth, out, tick=tick)
    out.data = stripper.message("Model", size, 0)
    return out
