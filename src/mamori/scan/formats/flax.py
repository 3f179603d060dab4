"""Flax msgpack checkpoints: structural validation of the msgpack stream, tensors unread.

``flax.serialization.to_bytes`` writes a state dict as one msgpack map whose leaves are
extension types (``flax/serialization.py``, ``_MsgpackExtType``): 1 = ndarray, 2 = native
complex, 3 = numpy scalar. Arrays and scalars are themselves msgpack of
``(shape, dtype_name, row_major_bytes)``; complex numbers are msgpack of ``(real, imag)``.
Any other extension type is decoded by whatever ``ext_hook`` the loading code installs, which
is how msgpack-based formats grow object deserialisation, so it is a finding.

The walk is our own, iterative and streaming: it reads type bytes and lengths and seeks over
binary payloads, so memory does not grow with the file and no Python object is built from the
content (``msgpack.Unpacker`` hands whole ext payloads to the hook as bytes).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Final

from mamori.findings import FileFormat, Severity
from mamori.scan._internal.source import Source
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext

__all__ = ["FlaxMsgpackHandler"]

_EXT_NDARRAY: Final = 1
_EXT_COMPLEX: Final = 2
_EXT_NPSCALAR: Final = 3
_MAX_DEPTH: Final = 256
_MAX_KEY: Final = 1 << 16
_MAX_DIMS: Final = 64
_MAX_REPORTED: Final = 20
_TICK_EVERY: Final = 1 << 16

# dtype names flax writes (``arr.dtype.name``) for the plain numeric dtypes numpy and
# ml_dtypes (JAX) provide, with their item size. Anything else (object, void, unicode, structured)
# is rejected: flax's own writer refuses object and structured dtypes.
_DTYPE_SIZES: Final[dict[str, int]] = {
    "bool": 1,
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "uint8": 1,
    "uint16": 2,
    "uint32": 4,
    "uint64": 8,
    "float16": 2,
    "float32": 4,
    "float64": 8,
    "complex64": 8,
    "complex128": 16,
    "bfloat16": 2,  # ml_dtypes, used by JAX
    "float8_e4m3fn": 1,
    "float8_e4m3fnuz": 1,
    "float8_e4m3b11fnuz": 1,
    "float8_e5m2": 1,
    "float8_e5m2fnuz": 1,
    "float8_e3m4": 1,
    "float8_e4m3": 1,
    "float8_e8m0fnu": 1,
    "float4_e2m1fn": 1,  # ml_dtypes stores sub-byte types one per byte
    "int4": 1,
    "uint4": 1,
    "int2": 1,
    "uint2": 1,
}


class _Malformed(Exception):  # noqa: N818 - internal control flow, becomes a finding
    def __init__(self, rule_id: str, message: str, offset: int) -> None:
        super().__init__(message)
        self.rule_id = rule_id
        self.message = message
        self.offset = offset


class _EndOfProbe(Exception):  # noqa: N818 - sniffing ran out of probe bytes, not an error
    pass


@dataclass(slots=True)
class _Reader:
    stream: IO[bytes]
    size: int
    pos: int = 0

    def read(self, n: int) -> bytes:
        if n > self.size - self.pos:
            raise _Malformed("MAM-FLAX-001", "value runs past the end of the data", self.pos)
        data = self.stream.read(n)
        if len(data) != n:
            raise _EndOfProbe
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        if n > self.size - self.pos:
            raise _Malformed("MAM-FLAX-001", "value runs past the end of the data", self.pos)
        self.stream.seek(n, io.SEEK_CUR)
        self.pos += n

    def uint(self, nbytes: int) -> int:
        return int.from_bytes(self.read(nbytes), "big")


@dataclass(slots=True)
class _Frame:
    remaining: int  # items left; a map counts keys and values separately
    is_map: bool


@dataclass(slots=True)
class _Walk:
    reader: _Reader
    issues: list[tuple[str, str, int, Severity | None]] = field(default_factory=list)
    keys_seen: int = 0
    first_key_printable: bool = False
    tick: Callable[[], None] = lambda: None
    """Called every few thousand items: the engine's deadline check."""
    nested: int = 0
    """Nested containers and extensions seen: a state dict always has some."""
    counts: dict[str, int] = field(default_factory=dict)

    def issue(self, rule_id: str, message: str, offset: int, sev: Severity | None = None) -> None:
        n = self.counts.get(rule_id, 0) + 1
        self.counts[rule_id] = n
        if n <= _MAX_REPORTED:
            self.issues.append((rule_id, message, offset, sev))


def _container(tag: int, r: _Reader) -> tuple[int, bool] | None:
    """Return ``(item count, is_map)`` when ``tag`` starts an array or map."""
    if 0x80 <= tag <= 0x8F:  # noqa: PLR2004 - msgpack fixmap
        return tag & 0x0F, True
    if 0x90 <= tag <= 0x9F:  # noqa: PLR2004 - msgpack fixarray
        return tag & 0x0F, False
    if tag in {0xDC, 0xDD}:
        return r.uint(2 if tag == 0xDC else 4), False  # noqa: PLR2004 - array16/array32
    if tag in {0xDE, 0xDF}:
        return r.uint(2 if tag == 0xDE else 4), True  # noqa: PLR2004 - map16/map32
    return None


_FIXED: Final[dict[int, int]] = {
    0xC0: 0, 0xC2: 0, 0xC3: 0,  # nil, false, true
    0xCA: 4, 0xCB: 8,  # float32, float64
    0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8,  # uint8..uint64
    0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,  # int8..int64
}  # fmt: skip
_STR_LEN: Final[dict[int, int]] = {0xD9: 1, 0xDA: 2, 0xDB: 4}
_BIN_LEN: Final[dict[int, int]] = {0xC4: 1, 0xC5: 2, 0xC6: 4}
_EXT_LEN: Final[dict[int, int]] = {0xC7: 1, 0xC8: 2, 0xC9: 4}
_FIXEXT: Final[dict[int, int]] = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}


def _str_len(tag: int, r: _Reader) -> int | None:
    if 0xA0 <= tag <= 0xBF:  # noqa: PLR2004 - fixstr
        return tag & 0x1F
    if tag in _STR_LEN:
        return r.uint(_STR_LEN[tag])
    return None


def _walk(walk: _Walk) -> None:  # noqa: C901, PLR0912 - one flat dispatch on the msgpack type byte
    """Walk one complete msgpack value from the reader's position (the root map)."""
    r = walk.reader
    stack: list[_Frame] = []
    first = True
    items_seen = 0
    while first or stack:
        first = False
        items_seen += 1
        if items_seen % _TICK_EVERY == 0:
            walk.tick()
        at = r.pos
        expect_key = bool(stack) and stack[-1].is_map and stack[-1].remaining % 2 == 0
        if stack:
            stack[-1].remaining -= 1
        tag = r.read(1)[0]
        if expect_key:
            _key(walk, tag, at)
        elif (container := _container(tag, r)) is not None:
            count, is_map = container
            if not stack and not is_map:
                raise _Malformed("MAM-FLAX-001", "root is not a map (flax state dict)", at)
            # Every item needs at least one byte; a larger count cannot fit in the file.
            items = count * 2 if is_map else count
            if items > r.size - r.pos:
                raise _Malformed("MAM-FLAX-004", f"container declares {count} items", at)
            if len(stack) >= _MAX_DEPTH:
                raise _Malformed("MAM-FLAX-004", f"nesting deeper than {_MAX_DEPTH}", at)
            if items:
                stack.append(_Frame(items, is_map))
            walk.nested += 1
        elif not stack:
            raise _Malformed("MAM-FLAX-001", "root is not a map (flax state dict)", at)
        elif tag <= 0x7F or tag >= 0xE0:  # noqa: PLR2004 - positive / negative fixint
            pass
        elif tag in _FIXED:
            r.skip(_FIXED[tag])
        elif (n := _str_len(tag, r)) is not None:
            r.skip(n)
        elif tag in _BIN_LEN:
            r.skip(r.uint(_BIN_LEN[tag]))
        elif tag in _EXT_LEN or tag in _FIXEXT:
            length = r.uint(_EXT_LEN[tag]) if tag in _EXT_LEN else _FIXEXT[tag]
            code = struct.unpack(">b", r.read(1))[0]
            walk.nested += 1
            _ext(walk, code, length, at)
        else:  # 0xC1 is the only byte left: "never used" in the spec
            raise _Malformed("MAM-FLAX-001", f"reserved msgpack type byte 0x{tag:02x}", at)
        while stack and stack[-1].remaining == 0:
            stack.pop()


def _key(walk: _Walk, tag: int, at: int) -> None:
    r = walk.reader
    n = _str_len(tag, r)
    if n is None:
        # flax state dicts have string keys only; from_state_dict looks keys up by name.
        walk.issue("MAM-FLAX-001", f"map key of type byte 0x{tag:02x} is not a string", at)
        raise _Malformed("MAM-FLAX-001", "non-string map key; structure not followed", at)
    if n > _MAX_KEY:
        raise _Malformed("MAM-FLAX-004", f"map key of {n} bytes", at)
    try:
        key = r.read(n).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Malformed("MAM-FLAX-001", "map key is not valid UTF-8", at) from exc
    if walk.keys_seen == 0:
        walk.first_key_printable = key.isprintable() and bool(key)
    walk.keys_seen += 1


def _ext(walk: _Walk, code: int, length: int, at: int) -> None:
    r = walk.reader
    end = r.pos + length
    if length > r.size - r.pos:
        raise _Malformed("MAM-FLAX-001", "extension runs past the end of the data", at)
    if code not in {_EXT_NDARRAY, _EXT_COMPLEX, _EXT_NPSCALAR}:
        walk.issue("MAM-FLAX-002", f"msgpack extension type {code} ({length} bytes)", at)
        r.skip(length)
        return
    inner = _Reader(r.stream, end, r.pos)
    try:
        if code == _EXT_COMPLEX:
            _complex_payload(inner)
        else:
            _array_payload(inner)
    except _Malformed as exc:
        walk.issue("MAM-FLAX-003", f"extension type {code}: {exc.message}", at)
    # The inner reader shares the stream; continue from where it stopped, then skip the rest.
    r.pos = inner.pos
    r.skip(end - inner.pos)


def _number(r: _Reader) -> None:
    tag = r.read(1)[0]
    if tag <= 0x7F or tag >= 0xE0:  # noqa: PLR2004 - fixint
        return
    if tag in _FIXED and tag not in {0xC0, 0xC2, 0xC3}:
        r.skip(_FIXED[tag])
        return
    raise _Malformed("MAM-FLAX-003", "complex part is not a number", r.pos)


def _complex_payload(r: _Reader) -> None:
    if r.read(1) != b"\x92":
        raise _Malformed("MAM-FLAX-003", "complex payload is not a (real, imag) pair", r.pos)
    _number(r)
    _number(r)
    if r.pos != r.size:
        raise _Malformed("MAM-FLAX-003", "bytes after the complex pair", r.pos)


def _uint_value(r: _Reader) -> int:
    tag = r.read(1)[0]
    if tag <= 0x7F:  # noqa: PLR2004 - positive fixint
        return tag
    if 0xCC <= tag <= 0xCF:  # noqa: PLR2004 - uint8..uint64
        return r.uint(_FIXED[tag])
    if 0xD0 <= tag <= 0xD3:  # noqa: PLR2004 - int8..int64, msgpack-python's choice for some
        value = int.from_bytes(r.read(_FIXED[tag]), "big", signed=True)
        if value >= 0:
            return value
    raise _Malformed("MAM-FLAX-003", "shape entry is not a non-negative integer", r.pos)


def _dtype_name(r: _Reader) -> str:
    # flax packs with use_bin_type=True, so the name is a str; accept bin as unpackb(raw=True)
    # in _ndarray_from_bytes does not distinguish them.
    tag = r.read(1)[0]
    n = _str_len(tag, r)
    if n is None and tag in _BIN_LEN:
        n = r.uint(_BIN_LEN[tag])
    if n is None or n > 64:  # noqa: PLR2004 - longest dtype name is ~20 characters
        raise _Malformed("MAM-FLAX-003", "dtype name is not a short string", r.pos)
    name = r.read(n).decode("ascii", errors="replace")
    if name not in _DTYPE_SIZES:
        raise _Malformed("MAM-FLAX-003", f"dtype {name!r} is not a plain numeric dtype", r.pos)
    return name


def _array_payload(r: _Reader) -> None:
    if r.read(1) != b"\x93":
        raise _Malformed("MAM-FLAX-003", "payload is not (shape, dtype, bytes)", r.pos)
    shape = _container(r.read(1)[0], r)
    if shape is None or shape[1]:
        raise _Malformed("MAM-FLAX-003", "shape is not an array", r.pos)
    if shape[0] > _MAX_DIMS:
        raise _Malformed("MAM-FLAX-003", f"{shape[0]} dimensions", r.pos)
    elements = 1
    for _ in range(shape[0]):
        elements *= _uint_value(r)
    name = _dtype_name(r)
    tag = r.read(1)[0]
    if tag not in _BIN_LEN:
        raise _Malformed("MAM-FLAX-003", "array data is not a bin value", r.pos)
    nbytes = r.uint(_BIN_LEN[tag])
    if nbytes != elements * _DTYPE_SIZES[name]:
        raise _Malformed(
            "MAM-FLAX-003",
            f"{nbytes} data bytes for {elements} elements of {name}",
            r.pos,
        )
    r.skip(nbytes)
    if r.pos != r.size:
        raise _Malformed("MAM-FLAX-003", "bytes after the array data", r.pos)


class FlaxMsgpackHandler(FormatHandler):
    """A msgpack map with string keys at the root, walked without building objects."""

    format = FileFormat.FLAX_MSGPACK
    needs_random_access = True

    def sniff(self, probe: Probe) -> bool:
        """A map header whose first key is a non-empty, printable UTF-8 string.

        Later defects do not stop the claim: a damaged checkpoint must be reported as one,
        not fall through as "unrecognised". The printable rule keeps other formats out: a
        safetensors length prefix such as ``88 a1 00 00 ...`` reads as a map with a NUL key.
        """
        head = probe.head
        if not head or not (0x81 <= head[0] <= 0x8F or head[0] in {0xDE, 0xDF}):  # noqa: PLR2004
            return False
        size = probe.size if probe.size is not None else 1 << 62
        walk = _Walk(_Reader(io.BytesIO(head), size))
        try:
            _walk(walk)
        except (_EndOfProbe, _Malformed):
            return walk.first_key_printable
        if walk.reader.pos != size and walk.nested <= 1:
            # A flat map that ends early is the prefix of something else (a safetensors
            # length such as 81 a1 41 00.. reads as {"A": 0}); a state dict with trailing
            # data still has nested maps or arrays and is claimed, then reported.
            return False
        return walk.first_key_printable

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Walk the whole stream; report structure, extension and limit problems."""
        assert source.size is not None  # needs_random_access: the engine provides a size
        with source.open() as stream:
            walk = _Walk(_Reader(stream, source.size), tick=ctx.check_deadline)
            try:
                _walk(walk)
            except _Malformed as exc:
                if not walk.issues or walk.issues[-1][2] != exc.offset:
                    walk.issue(exc.rule_id, exc.message, exc.offset)
            except _EndOfProbe:
                walk.issue("MAM-FLAX-001", "stream ended early", walk.reader.pos)
            else:
                if walk.reader.pos != source.size:
                    walk.issue(
                        "MAM-FLAX-001",
                        f"{source.size - walk.reader.pos} bytes after the root map",
                        walk.reader.pos,
                    )
        for rule_id, message, offset, severity in walk.issues:
            ctx.report(rule_id, message, offset=offset, severity=severity)
