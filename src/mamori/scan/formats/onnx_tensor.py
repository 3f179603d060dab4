"""Serialized ONNX ``TensorProto`` files: the test data ONNX model repositories ship.

ONNX's backend test layout (``test_data_set_0/input_0.pb``, ``output_0.pb``), which model-zoo
repositories copy, stores each input and output as one ``TensorProto`` (``onnx/onnx.proto``):
``dims`` = 1, ``data_type`` = 2, ``segment`` = 3, typed data fields 4-7 and 10-11, ``name`` = 8,
``raw_data`` = 9, ``doc_string`` = 12, ``external_data`` = 13, ``data_location`` = 14,
``metadata_props`` = 16. They are read with ``onnx.load_tensor`` (plain protobuf, no code).

Detection walks the fields of the probe: every field must be a TensorProto field with its wire
type, ``data_type`` must come before any data and name a known element type, and the declared
lengths must fit the file. The scan walks the whole file the same way (nothing is decoded into
objects), checks that ``raw_data`` holds exactly ``prod(dims) * element size`` bytes and reports
external data, which ``onnx.load_tensor`` reads from another file.
"""

from __future__ import annotations

import io
import math
from typing import IO, ClassVar, Final

from mamori.findings import FileFormat
from mamori.scan._internal.source import Source
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext

__all__ = ["OnnxTensorHandler"]

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
# field number -> wire types protobuf accepts for it (repeated scalars: packed or not).
_FIELDS: Final[dict[int, frozenset[int]]] = {
    1: frozenset({_VARINT, _LEN}),  # dims
    2: frozenset({_VARINT}),  # data_type
    3: frozenset({_LEN}),  # segment
    4: frozenset({_I32, _LEN}),  # float_data
    5: frozenset({_VARINT, _LEN}),  # int32_data
    6: frozenset({_LEN}),  # string_data
    7: frozenset({_VARINT, _LEN}),  # int64_data
    8: frozenset({_LEN}),  # name
    9: frozenset({_LEN}),  # raw_data
    10: frozenset({_I64, _LEN}),  # double_data
    11: frozenset({_VARINT, _LEN}),  # uint64_data
    12: frozenset({_LEN}),  # doc_string
    13: frozenset({_LEN}),  # external_data
    14: frozenset({_VARINT}),  # data_location
    16: frozenset({_LEN}),  # metadata_props
}
_DATA_FIELDS: Final = frozenset({4, 5, 6, 7, 9, 10, 11})
# TensorProto.DataType -> bytes per element in raw_data (None: not fixed, e.g. STRING;
# sub-byte types are packed two per byte).
_ELEMENT_BYTES: Final[dict[int, float | None]] = {
    1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 8: None, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8,
    14: 8, 15: 16, 16: 2, 17: 1, 18: 1, 19: 1, 20: 1, 21: 0.5, 22: 0.5, 23: 0.5, 24: 1,
    25: 0.5, 26: 0.5,
}  # fmt: skip
_EXTERNAL: Final = 1
_MAX_DIMS: Final = 64
_MAX_SMALL: Final = 1 << 16


class _WireError(ValueError):
    pass


def _varint(read: IO[bytes]) -> int | None:
    """One varint from ``read``; ``None`` at a clean end of input."""
    value = shift = 0
    for i in range(10):
        byte = read.read(1)
        if not byte:
            if i == 0:
                return None
            msg = "input ends inside a varint"
            raise _WireError(msg)
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7
    msg = "varint longer than 10 bytes"
    raise _WireError(msg)


class _Walk:
    """The fields of one TensorProto, read from a stream without building any object."""

    def __init__(self, stream: IO[bytes], size: int, *, partial: bool) -> None:
        self.stream = stream
        self.size = size
        self.partial = partial
        self.dims: list[int] = []
        self.data_type: int | None = None
        self.raw_len: int | None = None
        self.location = 0
        self.has_external = False

    def run(self) -> None:
        while (key := _varint(self.stream)) is not None:
            number, wire = key >> 3, key & 7
            if wire not in _FIELDS.get(number, frozenset()):
                msg = f"field {number} with wire type {wire} is not a TensorProto field"
                raise _WireError(msg)
            if number in _DATA_FIELDS and self.data_type is None:
                msg = "tensor data before data_type"
                raise _WireError(msg)
            if not self._field(number, wire) and self.partial:
                return

    def _field(self, number: int, wire: int) -> bool:
        """Consume one field's value; False when it runs past the probe (partial walk)."""
        if wire == _VARINT:
            value = _varint(self.stream)
            if value is None:
                return False
            self._scalar(number, value)
            return True
        if wire in {_I32, _I64}:
            return self._skip(4 if wire == _I32 else 8)
        length = _varint(self.stream)
        if length is None:
            return False
        start = self.stream.tell()
        if start + length > self.size:
            msg = f"field {number} declares {length} bytes past the end of the file"
            raise _WireError(msg)
        if number == 1 and length <= _MAX_SMALL:  # packed dims
            self.dims.extend(_packed(self.stream.read(length)))
            return True
        if number == 9:  # noqa: PLR2004 - raw_data
            self.raw_len = length
        if number == 13:  # noqa: PLR2004 - external_data
            self.has_external = True
        return self._skip(length)

    def _scalar(self, number: int, value: int) -> None:
        if number == 1:
            self.dims.append(value)
        elif number == 2:  # noqa: PLR2004 - data_type
            if value not in _ELEMENT_BYTES:
                msg = f"unknown data_type {value}"
                raise _WireError(msg)
            self.data_type = value
        elif number == 14:  # noqa: PLR2004 - data_location
            self.location = value

    def _skip(self, n: int) -> bool:
        target = self.stream.tell() + n
        if target > self.size:
            if self.partial:
                return False
            msg = "a field runs past the end of the file"
            raise _WireError(msg)
        self.stream.seek(target)
        return True


def _packed(data: bytes) -> list[int]:
    stream = io.BytesIO(data)
    out: list[int] = []
    while (value := _varint(stream)) is not None:
        out.append(value)
    return out


class OnnxTensorHandler(FormatHandler):
    """FileFormat.ONNX_TENSOR: one serialized ``TensorProto``."""

    format: ClassVar[FileFormat] = FileFormat.ONNX_TENSOR
    needs_random_access: ClassVar[bool] = True

    def sniff(self, probe: Probe) -> bool:
        """Only TensorProto fields, ``data_type`` before the data, lengths inside the file."""
        head = probe.head
        if head[:1] not in {b"\x08", b"\x0a", b"\x10"}:
            return False
        size = probe.size if probe.size is not None else 1 << 62
        walk = _Walk(io.BytesIO(head), size, partial=len(head) < size)
        try:
            walk.run()
        except _WireError:
            return False
        return walk.data_type is not None and len(walk.dims) <= _MAX_DIMS

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Walk every field; check raw_data's length against dims and report external data."""
        size = source.size or 0
        with source.open() as stream:
            walk = _Walk(stream, size, partial=False)
            try:
                walk.run()
            except _WireError as exc:
                ctx.report("MAM-ONNX-001", f"tensor file does not decode: {exc}")
                return
        if walk.has_external or walk.location == _EXTERNAL:
            ctx.report(
                "MAM-ONNX-003",
                "the tensor keeps its data in an external file that onnx.load_tensor reads "
                "and that is not part of what was scanned",
            )
        element = _ELEMENT_BYTES.get(walk.data_type or 0)
        if walk.raw_len is not None and element is not None and len(walk.dims) <= _MAX_DIMS:
            expected = math.ceil(math.prod(walk.dims) * element)
            if expected != walk.raw_len:
                ctx.report(
                    "MAM-ONNX-006",
                    f"raw_data holds {walk.raw_len} bytes but dims {walk.dims[:8]} need {expected}",
                )
