"""GGUF (llama.cpp): header, metadata and tensor table validation; chat template analysis.

Layout (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md): ``GGUF``, a u32 version,
tensor and key/value counts, the key/value metadata, the tensor infos, padding to
``general.alignment`` and the tensor data. The metadata can hold a Jinja2 chat template that
servers render (CVE-2024-34359: RCE through an unsandboxed render in llama-cpp-python); the
binary tables are a classic source of reader crashes (out-of-bounds counts and offsets).

The reader streams: strings are bounded, arrays are walked without being kept, tensor data is
never read. Only chat templates are kept in memory, to be parsed (never rendered).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Final

from mamori.findings import FileFormat
from mamori.scan._internal.source import Source
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext

__all__ = ["GGUFHandler"]

_MAGIC: Final = b"GGUF"
_KNOWN_VERSIONS: Final = frozenset({1, 2, 3})
_DEFAULT_ALIGNMENT: Final = 32
_MAX_DIMS: Final = 4  # GGML_MAX_DIMS in ggml.h; llama.cpp rejects more
_MAX_NAME: Final = 64  # GGML_MAX_NAME; llama.cpp rejects longer tensor names
_MAX_KEY: Final = 1 << 16
# Four times jinja_check.MAX_TEMPLATE_CHARS (a test pins it): a literal, because importing
# jinja_check imports jinja2, which only a file with a chat template should pay for.
_MAX_STRING_KEPT: Final = 4 << 20
_MAX_ARRAY_DEPTH: Final = 8
_MAX_REPORTED: Final = 20
_TEMPLATE_KEY: Final = "tokenizer.chat_template"

# GGUF metadata value types (gguf.md "gguf_metadata_value_type"): code -> (struct char, size).
_SCALARS: Final[dict[int, tuple[str, int]]] = {
    0: ("B", 1),  # UINT8
    1: ("b", 1),  # INT8
    2: ("H", 2),  # UINT16
    3: ("h", 2),  # INT16
    4: ("I", 4),  # UINT32
    5: ("i", 4),  # INT32
    6: ("f", 4),  # FLOAT32
    7: ("B", 1),  # BOOL
    10: ("Q", 8),  # UINT64
    11: ("q", 8),  # INT64
    12: ("d", 8),  # FLOAT64
}
_STRING: Final = 8
_ARRAY: Final = 9

# ggml tensor types: id -> (elements per block, bytes per block), from ggml.c type_traits as
# mirrored by gguf-py's GGML_QUANT_SIZES. Ids 4, 5 (Q4_2/Q4_3) and 31-33, 36-38 were removed
# upstream; a file using them cannot be loaded.
_GGML_TYPES: Final[dict[int, tuple[int, int]]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    9: (32, 40),  # Q8_1
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    16: (256, 66),  # IQ2_XXS
    17: (256, 74),  # IQ2_XS
    18: (256, 98),  # IQ3_XXS
    19: (256, 50),  # IQ1_S
    20: (32, 18),  # IQ4_NL
    21: (256, 110),  # IQ3_S
    22: (256, 82),  # IQ2_S
    23: (256, 136),  # IQ4_XS
    24: (1, 1),  # I8
    25: (1, 2),  # I16
    26: (1, 4),  # I32
    27: (1, 8),  # I64
    28: (1, 8),  # F64
    29: (256, 56),  # IQ1_M
    30: (1, 2),  # BF16
    34: (256, 54),  # TQ1_0
    35: (256, 66),  # TQ2_0
    39: (32, 17),  # MXFP4
    40: (64, 36),  # NVFP4
    41: (128, 18),  # Q1_0
}


class _Malformed(Exception):  # noqa: N818 - internal control flow, becomes a finding
    def __init__(self, rule_id: str, message: str, offset: int) -> None:
        super().__init__(message)
        self.rule_id = rule_id
        self.message = message
        self.offset = offset


@dataclass(slots=True)
class _Reader:
    stream: IO[bytes]
    size: int
    endian: str = "<"
    pos: int = 0
    wide: bool = True  # v2+: u64 counts and lengths; v1: u32

    def read(self, n: int, what: str) -> bytes:
        if n > self.size - self.pos:
            raise _Malformed("MAM-GGUF-001", f"{what} runs past the end of the file", self.pos)
        data = self.stream.read(n)
        if len(data) != n:
            raise _Malformed("MAM-GGUF-001", f"{what} truncated", self.pos)
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise _Malformed("MAM-GGUF-001", f"{what} runs past the end of the file", self.pos)
        self.stream.seek(n, 1)
        self.pos += n

    def unpack(self, fmt: str, size: int, what: str) -> int | float:
        value: int | float = struct.unpack(self.endian + fmt, self.read(size, what))[0]
        return value

    def u32(self, what: str) -> int:
        return int(self.unpack("I", 4, what))

    def count(self, what: str) -> int:
        return int(self.unpack("Q", 8, what)) if self.wide else self.u32(what)

    def string(self, what: str, keep: int) -> str | None:
        """Read a GGUF string; return it when at most ``keep`` bytes, else skip it."""
        start = self.pos
        n = self.count(f"{what} length")
        if n > keep:
            self.skip(n, what)
            return None
        raw = self.read(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Malformed("MAM-GGUF-001", f"{what} is not valid UTF-8", start) from exc


@dataclass(slots=True)
class _State:
    ctx: ScanContext
    keys: set[str] = field(default_factory=set)
    alignment: int = _DEFAULT_ALIGNMENT
    reported: dict[str, int] = field(default_factory=dict)

    def report(self, rule_id: str, message: str, offset: int, evidence: str | None = None) -> None:
        n = self.reported.get(rule_id, 0) + 1
        self.reported[rule_id] = n
        if n <= _MAX_REPORTED:
            self.ctx.report(rule_id, message, offset=offset, evidence=evidence)


class GGUFHandler(FormatHandler):
    """Streams the GGUF header and tables; analyses chat templates without rendering them."""

    format = FileFormat.GGUF
    needs_random_access = True

    def sniff(self, probe: Probe) -> bool:
        """``GGUF`` magic followed by a version whose low or high half is non-zero."""
        head = probe.head
        if len(head) < 8 or head[:4] != _MAGIC:  # noqa: PLR2004 - magic + version
            return False
        return head[4:8] != b"\x00\x00\x00\x00"

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Validate header, metadata, tensor table and data layout; check chat templates."""
        assert source.size is not None  # needs_random_access: the engine provides a size
        state = _State(ctx)
        with source.open() as stream:
            reader = _Reader(stream, source.size)
            try:
                _scan_tables(reader, state)
            except _Malformed as exc:
                state.report(exc.rule_id, exc.message, exc.offset)


def _scan_tables(reader: _Reader, state: _State) -> None:
    reader.read(4, "magic")
    raw_version = reader.read(4, "version")
    version = struct.unpack("<I", raw_version)[0]
    if version & 0xFFFF == 0:
        # A big-endian file (s390x builds of llama.cpp) reads as 0x03000000 in little endian;
        # gguf-py detects it the same way.
        reader.endian = ">"
        version = struct.unpack(">I", raw_version)[0]
    if version not in _KNOWN_VERSIONS:
        raise _Malformed("MAM-GGUF-002", f"unknown GGUF version {version}", 4)
    reader.wide = version >= 2  # noqa: PLR2004 - GGUFv2 widened counts to 64 bits
    n_tensors = reader.count("tensor count")
    n_kv = reader.count("metadata count")
    # Every key/value takes at least 13 bytes and every tensor info at least 24, so larger
    # counts cannot fit in the file; a reader that trusts them allocates without bound.
    if n_kv * 13 + n_tensors * 24 > reader.size - reader.pos:
        raise _Malformed(
            "MAM-GGUF-005",
            f"{n_kv} metadata entries and {n_tensors} tensors cannot fit in the file",
            8,
        )
    for _ in range(n_kv):
        _read_kv(reader, state)
    tensors = [_read_tensor_info(reader, state, version) for _ in range(n_tensors)]
    _check_data(reader, state, tensors)


def _read_kv(reader: _Reader, state: _State) -> None:
    start = reader.pos
    key = reader.string("metadata key", _MAX_KEY)
    if key is None:
        raise _Malformed("MAM-GGUF-005", "metadata key longer than 64 KiB", start)
    if key in state.keys:
        # llama.cpp refuses duplicate keys, other readers keep the first or the last one.
        state.report("MAM-GGUF-006", f"duplicate metadata key {key!r}", start, key)
    state.keys.add(key)
    value_type = reader.u32(f"type of {key}")
    if key == "general.alignment":
        _read_alignment(reader, state, value_type, start)
        return
    if value_type == _STRING and key.startswith(_TEMPLATE_KEY):
        value_start = reader.pos
        text = reader.string(f"value of {key}", _MAX_STRING_KEPT)
        if text is None:
            state.report("MAM-TPL-002", f"chat template {key!r} too large to analyse", start)
        else:
            # Checked at once, not kept: a file may hold many template keys.
            state.ctx.check_deadline()
            _check_chat_template(key, text, value_start, state.ctx)
        return
    _skip_value(reader, state, value_type, key, 0)


def _read_alignment(reader: _Reader, state: _State, value_type: int, start: int) -> None:
    if value_type != 4:  # noqa: PLR2004 - the spec requires a UINT32
        raise _Malformed("MAM-GGUF-001", "general.alignment is not a uint32", start)
    value = reader.u32("general.alignment")
    if value == 0 or value & (value - 1):
        raise _Malformed("MAM-GGUF-001", f"general.alignment {value} is not a power of 2", start)
    state.alignment = value


def _skip_value(reader: _Reader, state: _State, value_type: int, key: str, depth: int) -> None:
    if value_type in _SCALARS:
        reader.read(_SCALARS[value_type][1], f"value of {key}")
    elif value_type == _STRING:
        reader.string(f"value of {key}", 0)
    elif value_type == _ARRAY:
        if depth >= _MAX_ARRAY_DEPTH:
            raise _Malformed("MAM-GGUF-005", f"arrays in {key!r} nested too deeply", reader.pos)
        item_type = reader.u32(f"array type of {key}")
        count = reader.count(f"array length of {key}")
        if item_type in _SCALARS:
            reader.skip(count * _SCALARS[item_type][1], f"array {key}")
            return
        if item_type not in {_STRING, _ARRAY}:
            raise _Malformed(
                "MAM-GGUF-001", f"unknown array type {item_type} in {key!r}", reader.pos
            )
        # Each string or nested array needs at least 8 bytes of header.
        if count * 8 > reader.size - reader.pos:
            raise _Malformed(
                "MAM-GGUF-005", f"array {key!r} length {count} exceeds the file", reader.pos
            )
        for i in range(count):
            if i % 4096 == 0:
                state.ctx.check_deadline()
            _skip_value(reader, state, item_type, key, depth + 1)
    else:
        raise _Malformed("MAM-GGUF-001", f"unknown value type {value_type} for {key!r}", reader.pos)


@dataclass(frozen=True, slots=True)
class _Tensor:
    name: str
    offset: int
    nbytes: int
    info_offset: int


def _read_tensor_info(reader: _Reader, state: _State, version: int) -> _Tensor:
    start = reader.pos
    name = reader.string("tensor name", _MAX_KEY)
    if name is None:
        raise _Malformed("MAM-GGUF-005", "tensor name longer than 64 KiB", start)
    n_dims = reader.u32(f"dimension count of {name}")
    if n_dims > _MAX_DIMS:
        raise _Malformed("MAM-GGUF-003", f"tensor {name!r} has {n_dims} dimensions (max 4)", start)
    dim: Callable[[str], int] = reader.count if version >= 2 else reader.u32  # noqa: PLR2004
    dims = [dim(f"dimension of {name}") for _ in range(n_dims)]
    ggml_type = reader.u32(f"type of {name}")
    offset = int(reader.unpack("Q", 8, f"offset of {name}"))
    if len(name.encode()) >= _MAX_NAME:
        state.report("MAM-GGUF-003", f"tensor name {name[:80]!r} is 64 bytes or longer", start)
    if ggml_type not in _GGML_TYPES:
        raise _Malformed("MAM-GGUF-003", f"tensor {name!r} has unknown type {ggml_type}", start)
    block, block_bytes = _GGML_TYPES[ggml_type]
    elements = 1
    for d in dims:
        elements *= d
    if any(d >= 1 << 63 for d in dims) or elements >= 1 << 63:
        raise _Malformed("MAM-GGUF-003", f"tensor {name!r} dimensions overflow int64", start)
    if dims and dims[0] % block:
        state.report(
            "MAM-GGUF-003",
            f"tensor {name!r} row of {dims[0]} is not a multiple of the block size {block}",
            start,
            name,
        )
    return _Tensor(name, offset, elements // block * block_bytes, start)


def _align(value: int, alignment: int) -> int:
    return value + (-value % alignment)


def _check_data(reader: _Reader, state: _State, tensors: list[_Tensor]) -> None:
    data_start = _align(reader.pos, state.alignment)
    data_size = reader.size - data_start
    names: set[str] = set()
    for t in tensors:
        if t.name in names:
            state.report("MAM-GGUF-006", f"duplicate tensor name {t.name!r}", t.info_offset, t.name)
        names.add(t.name)
        if t.offset % state.alignment:
            state.report(
                "MAM-GGUF-003",
                f"tensor {t.name!r} offset {t.offset} is not aligned to {state.alignment}",
                t.info_offset,
                t.name,
            )
        if t.offset + t.nbytes > data_size:
            state.report(
                "MAM-GGUF-003",
                f"tensor {t.name!r} data [{t.offset}, {t.offset + t.nbytes}) runs past the end",
                t.info_offset,
                t.name,
            )
    end = 0
    for t in sorted(tensors, key=lambda t: (t.offset, t.nbytes)):
        if t.offset < end:
            state.report(
                "MAM-GGUF-003", f"tensor {t.name!r} overlaps the previous tensor", t.info_offset
            )
        elif t.offset - _align(end, state.alignment) > 0:
            state.report(
                "MAM-GGUF-004",
                f"{t.offset - end} unreferenced bytes before tensor {t.name!r}",
                data_start + end,
            )
        end = max(end, t.offset + t.nbytes)
    # The writer pads after every tensor, including the last; allow that, not more.
    if data_size > _align(end, state.alignment) and data_size > 0:
        state.report(
            "MAM-GGUF-004",
            f"{data_size - end} bytes after the last tensor are not described by the header",
            data_start + end,
        )


def _check_chat_template(key: str, template: str, offset: int, ctx: ScanContext) -> None:
    # Lazy: jinja2 is imported only when a template is present (start-up time).
    from mamori.scan._internal.jinja_check import report_template  # noqa: PLC0415

    report_template(key, template, ctx, offset=offset)
