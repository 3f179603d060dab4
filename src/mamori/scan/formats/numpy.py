r"""NumPy ``.npy`` arrays and ``.npz`` archives, parsed without numpy.

An ``.npy`` file is ``\\x93NUMPY``, a version (1.0, 2.0 or 3.0), a little-endian header length
(2 bytes in 1.0, 4 bytes later), a header that is the ``repr`` of a Python dict with exactly the
keys ``descr``, ``fortran_order`` and ``shape``, then the array data. Numeric arrays are raw bytes
whose length follows from the header; arrays with an object dtype are a *pickle*, which
``np.load`` unpickles when ``allow_pickle`` is on. Upstream reader:
https://github.com/numpy/numpy/blob/main/numpy/lib/_format_impl.py

The header is parsed with ``ast.parse(mode="eval")`` and a walk that accepts only the literal
shapes numpy writes: nothing is evaluated. An ``.npz`` file is a zip of ``<name>.npy`` members
(``np.savez`` stores them, ``np.savez_compressed`` deflates them); each member is scanned by
content.
"""

from __future__ import annotations

import ast
import io
import math
import re
import struct
import tokenize
from dataclasses import dataclass
from typing import IO, Final

from mamori.findings import FileFormat
from mamori.scan._internal.pushback import pushback
from mamori.scan._internal.source import Source
from mamori.scan._internal.zipread import ZipEntry, read_zip, zip_names_from_probe
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext
from mamori.scan.pickle import analyse_one, analyse_stream

__all__ = [
    "NPY_MAGIC",
    "DTypeInfo",
    "NpyHeader",
    "NpyHeaderError",
    "NumpyHandler",
    "NumpyNpzHandler",
    "parse_descr",
    "parse_npy_header",
    "scan_npy_stream",
    "typestr_info",
]

NPY_MAGIC: Final = b"\x93NUMPY"
_PREAMBLE = len(NPY_MAGIC) + 2
_WHITESPACE_TRAILER: Final = 4
# numpy's own default refuses headers above 10 000 bytes unless the caller raises
# ``max_header_size`` (numpy >= 1.24, CVE-2019-6446 follow-up); we allow more so that wide
# structured dtypes still get sized, but never read an unbounded header.
_MAX_HEADER: Final = 1 << 20
_HEADER_KEYS: Final = frozenset({"descr", "fortran_order", "shape"})
_CHUNK: Final = 1 << 20

# Element sizes by dtype kind. ``None`` means "the digits in the type string are the size";
# a tuple lists the sizes numpy accepts for that kind.
_FIXED_SIZES: Final[dict[str, tuple[int, ...]]] = {
    "b": (1,),  # bool
    "i": (1, 2, 4, 8),  # signed integers
    "u": (1, 2, 4, 8),  # unsigned integers
    "f": (2, 4, 8, 12, 16),  # half .. long double (12 on 32-bit x86)
    "c": (8, 16, 24, 32),  # complex pairs of the above
}
_FLEXIBLE: Final = frozenset("SUV")  # bytes, UCS-4 text, void: the digits are a length
_TYPESTR = re.compile(r"([<>|=]?)([biufcSUVOMm])(\d{0,12})(\[\d{0,9}[A-Za-z]{1,3}\])?")
_MAX_DTYPE_DEPTH: Final = 8


class NpyHeaderError(ValueError):
    """The header is not one numpy writes; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class DTypeInfo:
    """What the scanner needs to know about a dtype: its size and whether it holds objects."""

    itemsize: int
    has_object: bool


@dataclass(frozen=True, slots=True)
class NpyHeader:
    """A parsed ``.npy`` header."""

    version: tuple[int, int]
    descr: str
    """The ``descr`` value as written (a type string, or the repr of a structured dtype)."""
    dtype: DTypeInfo
    fortran_order: bool
    shape: tuple[int, ...]
    data_offset: int
    """Offset of the first data byte from the start of the file."""

    @property
    def data_size(self) -> int:
        """Bytes of raw data a numeric array of this header occupies."""
        return self.dtype.itemsize * math.prod(self.shape)


def typestr_info(typestr: str) -> DTypeInfo:
    """Size a numpy type string such as ``'<f8'``, ``'|S3'``, ``'<U5'``, ``'|O'`` or ``'M8[s]'``.

    Raises:
        NpyHeaderError: the string is no type string numpy writes.
    """
    match = _TYPESTR.fullmatch(typestr)
    if match is None:
        msg = f"unsupported dtype {typestr!r}"
        raise NpyHeaderError(msg)
    _, kind, digits, unit = match.groups()
    if unit is not None and kind not in "Mm":
        msg = f"unit suffix on non-datetime dtype {typestr!r}"
        raise NpyHeaderError(msg)
    if kind == "O":
        # Object pointers; numpy writes '|O' (and 'O8' inside a pickled dtype).
        if digits not in ("", "8"):
            msg = f"unsupported object dtype {typestr!r}"
            raise NpyHeaderError(msg)
        return DTypeInfo(8, has_object=True)
    if kind in "Mm":
        if digits not in ("", "8"):
            msg = f"unsupported datetime dtype {typestr!r}"
            raise NpyHeaderError(msg)
        return DTypeInfo(8, has_object=False)
    if kind in _FLEXIBLE:
        length = int(digits) if digits else 0
        return DTypeInfo(4 * length if kind == "U" else length, has_object=False)
    if not digits or int(digits) not in _FIXED_SIZES[kind]:
        msg = f"unsupported {kind!r} size in dtype {typestr!r}"
        raise NpyHeaderError(msg)
    return DTypeInfo(int(digits), has_object=False)


def parse_descr(descr: object, *, _depth: int = 0) -> DTypeInfo:
    """Size an ``.npy`` ``descr``: a type string, or a structured-dtype list of fields.

    A field is ``(name, descr)`` or ``(name, descr, shape)``; ``name`` may be a
    ``(title, name)`` pair; an empty name is padding. Fields are packed one after another,
    which is how numpy's ``descr_to_dtype`` rebuilds them.

    Raises:
        NpyHeaderError: the value is not a descr numpy writes.
    """
    if isinstance(descr, str):
        return typestr_info(descr)
    if _depth >= _MAX_DTYPE_DEPTH:
        raise NpyHeaderError("structured dtype nested too deeply")
    if not isinstance(descr, list) or not descr:
        raise NpyHeaderError("descr must be a type string or a non-empty list of fields")
    size = 0
    has_object = False
    names: set[str] = set()
    for field in descr:
        if not isinstance(field, tuple) or len(field) not in (2, 3):
            raise NpyHeaderError("a structured dtype field must be a 2- or 3-tuple")
        name = _field_name(field[0])
        if name:
            if name in names:
                msg = f"duplicate field name {name!r}"
                raise NpyHeaderError(msg)
            names.add(name)
        info = parse_descr(field[1], _depth=_depth + 1)
        count = 1
        if len(field) == 3:  # noqa: PLR2004 - (name, descr, shape)
            count = math.prod(_check_shape(field[2], "field shape"))
        size += info.itemsize * count
        has_object = has_object or info.has_object
    return DTypeInfo(size, has_object=has_object)


def _field_name(name: object) -> str:
    if isinstance(name, tuple):
        if len(name) != 2 or not all(isinstance(part, str) for part in name):  # noqa: PLR2004 - (title, name)
            raise NpyHeaderError("a titled field name must be a (title, name) pair")
        name = name[1]
    if not isinstance(name, str):
        raise NpyHeaderError("a field name must be a string")
    return name


def _check_shape(value: object, what: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, tuple):
        msg = f"{what} must be a tuple of integers"
        raise NpyHeaderError(msg)
    for dim in value:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 0:
            msg = f"{what} must hold non-negative integers, got {dim!r}"
            raise NpyHeaderError(msg)
    return value


def _literal(node: ast.expr) -> object:
    """Convert the few literal node kinds an npy header may contain; anything else fails."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bool | int):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    msg = f"header holds a non-literal {type(node).__name__} node"
    raise NpyHeaderError(msg)


def _header_dict(text: str) -> dict[str, object]:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        msg = f"header is not a Python literal: {type(exc).__name__}"
        raise NpyHeaderError(msg) from exc
    if not isinstance(tree.body, ast.Dict):
        raise NpyHeaderError("header is not a dict literal")
    out: dict[str, object] = {}
    for key_node, value_node in zip(tree.body.keys, tree.body.values, strict=True):
        if not isinstance(key_node, ast.Constant) or not isinstance(key_node.value, str):
            raise NpyHeaderError("header keys must be strings")
        if key_node.value in out:
            msg = f"duplicate header key {key_node.value!r}"
            raise NpyHeaderError(msg)
        try:
            out[key_node.value] = _literal(value_node)
        except RecursionError as exc:
            raise NpyHeaderError("header literal nested too deeply") from exc
    return out


def _filter_py2_longs(text: str) -> str:
    """Drop a NAME token ``L`` that directly follows a NUMBER (numpy's ``_filter_header``)."""
    out: list[tuple[int, str]] = []
    last = None
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if not (
                last == tokenize.NUMBER and token.type == tokenize.NAME and token.string == "L"
            ):
                out.append((token.type, token.string))
            last = token.type
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return text
    return tokenize.untokenize(out)


def _read_preamble(stream: IO[bytes]) -> tuple[tuple[int, int], int, int]:
    """Magic and version, then the header length: ``(version, length, size of length)``."""
    preamble = stream.read(_PREAMBLE)
    if len(preamble) < _PREAMBLE or not preamble.startswith(NPY_MAGIC):
        raise NpyHeaderError("missing \\x93NUMPY magic")
    version = (preamble[6], preamble[7])
    if version == (1, 0):
        fmt = "<H"
    elif version in ((2, 0), (3, 0)):
        fmt = "<I"
    else:
        msg = f"unsupported .npy version {version[0]}.{version[1]}"
        raise NpyHeaderError(msg)
    size = struct.calcsize(fmt)
    length_bytes = stream.read(size)
    if len(length_bytes) != size:
        raise NpyHeaderError("truncated header length")
    (header_len,) = struct.unpack(fmt, length_bytes)
    return version, header_len, size


def parse_npy_header(stream: IO[bytes], *, max_header: int = _MAX_HEADER) -> NpyHeader:
    """Read and validate the magic, version and header of an ``.npy`` stream.

    Leaves ``stream`` at the first data byte.

    Raises:
        NpyHeaderError: anything numpy would reject, or a header larger than ``max_header``.
    """
    version, header_len, length_size = _read_preamble(stream)
    if header_len > max_header:
        msg = f"header of {header_len} bytes exceeds the {max_header} byte bound"
        raise NpyHeaderError(msg)
    raw = stream.read(header_len)
    if len(raw) != header_len:
        raise NpyHeaderError("truncated header")
    try:
        # Versions 1 and 2 are latin-1, version 3 is UTF-8 (NEP 1 and numpy's format docs).
        text = raw.decode("utf-8" if version == (3, 0) else "latin-1")
    except UnicodeDecodeError as exc:
        raise NpyHeaderError("header is not valid UTF-8") from exc
    try:
        fields = _header_dict(text)
    except NpyHeaderError:
        if version > (2, 0):
            raise
        # numpy retries version 1/2 headers through format._filter_header, which drops the
        # "L" suffix Python 2 wrote on long integers ("(2L,)"): accept what numpy accepts.
        fields = _header_dict(_filter_py2_longs(text))
    if set(fields) != _HEADER_KEYS:
        msg = f"header keys {sorted(fields)} are not {sorted(_HEADER_KEYS)}"
        raise NpyHeaderError(msg)
    fortran = fields["fortran_order"]
    if not isinstance(fortran, bool):
        raise NpyHeaderError("fortran_order must be True or False")
    shape = _check_shape(fields["shape"], "shape")
    if isinstance(fields["shape"], int):
        raise NpyHeaderError("shape must be a tuple")
    descr = fields["descr"]
    return NpyHeader(
        version=version,
        descr=descr if isinstance(descr, str) else repr(descr),
        dtype=parse_descr(descr),
        fortran_order=fortran,
        shape=shape,
        data_offset=_PREAMBLE + length_size + header_len,
    )


def _count_remaining(stream: IO[bytes], ctx: ScanContext, limit: int) -> int:
    """Read and count up to ``limit + 1`` bytes, so that "more than expected" is visible."""
    total = 0
    while total <= limit:
        chunk = stream.read(min(_CHUNK, limit + 1 - total))
        if not chunk:
            break
        total += len(chunk)
        ctx.check_deadline()
    return total


def scan_npy_stream(stream: IO[bytes], ctx: ScanContext) -> None:
    """Validate an ``.npy`` stream from its first byte; analyse object arrays as pickles."""
    try:
        header = parse_npy_header(stream, max_header=min(_MAX_HEADER, ctx.limits.max_header_bytes))
    except NpyHeaderError as exc:
        ctx.report("MAM-NPY-001", f"malformed .npy header: {exc}", offset=0)
        return
    if header.dtype.has_object:
        ctx.report(
            "MAM-NPY-003",
            "object-dtype array: the data is a pickle (loaded only when allow_pickle is on)",
            offset=header.data_offset,
            evidence=header.descr,
        )
        result = analyse_one(stream, ctx, offset_base=header.data_offset)
        if not result.complete:
            return  # the analyser has reported the truncated or broken pickle
        rest = stream.read(_WHITESPACE_TRAILER + 1)
        if rest and not (len(rest) <= _WHITESPACE_TRAILER and rest.isspace()):
            # A newline or two after the pickle (Python 2 era numpy wrote one) cannot carry
            # content; anything else can.
            ctx.report(
                "MAM-NPY-002",
                "bytes follow the pickled object array; numpy never reads them",
                offset=result.end,
            )
            # A hidden second pickle is the usual reason for such bytes: analyse them too.
            analyse_stream(pushback(rest, stream), ctx, offset_base=result.end)
        return
    expected = header.data_size
    actual = _count_remaining(stream, ctx, expected)
    if actual < expected:
        ctx.report(
            "MAM-NPY-002",
            f"array data is truncated: {actual} of {expected} bytes present",
            offset=header.data_offset + actual,
            evidence=f"descr={header.descr} shape={header.shape}",
        )
    elif actual > expected:
        ctx.report(
            "MAM-NPY-002",
            "bytes follow the array data; numpy never reads them",
            offset=header.data_offset + expected,
            evidence=f"descr={header.descr} shape={header.shape}",
        )


class NumpyHandler(FormatHandler):
    """``.npy``: strict header parsing, exact data size, object arrays analysed as pickles."""

    format = FileFormat.NUMPY

    def sniff(self, probe: Probe) -> bool:
        """The magic followed by a version numpy writes."""
        head = probe.head
        return (
            len(head) >= _PREAMBLE
            and head.startswith(NPY_MAGIC)
            and head[6] in (1, 2, 3)
            and head[7] == 0
        )

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Parse the header and check the data against it, in one forward pass."""
        with source.open() as stream:
            scan_npy_stream(stream, ctx)


def _npz_expected(entry: ZipEntry) -> FileFormat | None:
    return FileFormat.NUMPY if entry.name.endswith(".npy") else None


class NumpyNpzHandler(FormatHandler):
    """``.npz``: a zip whose members are ``.npy`` arrays, each scanned by content."""

    format = FileFormat.NUMPY_NPZ
    refines = FileFormat.ZIP
    needs_random_access = True

    def sniff(self, probe: Probe) -> bool:
        """A zip whose every member is named ``*.npy`` (what ``np.savez`` writes)."""
        names = zip_names_from_probe(probe)
        return bool(names) and all(name.endswith(".npy") for name in names or ())

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Read the directory strictly, then scan every member by content."""
        directory = read_zip(source, ctx)
        directory.scan_members(ctx, expected_format=_npz_expected)
