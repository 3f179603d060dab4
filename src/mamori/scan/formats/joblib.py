r"""Uncompressed ``joblib.dump`` files: a pickle with numpy array bytes spliced into it.

joblib's ``NumpyPickler`` (joblib/numpy_pickle.py) replaces each numpy array by a
``joblib.numpy_pickle.NumpyArrayWrapper`` whose state holds the array's ``shape``, ``order``
and ``dtype``. Right after the wrapper's BUILD opcode, *outside the pickle grammar*, it writes:

* numeric dtypes: one byte giving a padding length ``p`` (joblib >= 1.2 with a seekable file,
  state key ``numpy_array_alignment_bytes``), ``p`` padding bytes (``\\xff``), then exactly
  ``itemsize * prod(shape)`` bytes of array data;
* object dtypes: a complete nested pickle (protocol 5) of the array, read by a fresh
  unpickler that shares the outer one's ``find_class``.

The pickle then continues. A plain pickle reader would misread those bytes as opcodes, so this
handler uses the canonical analyser's BUILD hook to consume them: numeric data is skipped by the
size the wrapper declares, nested pickles are analysed like any other.

Compressed dumps (``compress=`` zlib, gzip, bz2, lzma, xz) are compression streams; the
compression handlers decompress them and the result is recognised here by content.
"""

from __future__ import annotations

import math
from typing import IO, Final, TypeGuard

from mamori.findings import FileFormat
from mamori.scan._internal.pushback import pushback
from mamori.scan._internal.scoped_context import MemberContext
from mamori.scan._internal.source import Source
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext
from mamori.scan.formats.numpy import DTypeInfo, NpyHeaderError, typestr_info
from mamori.scan.pickle import (
    Call,
    DictV,
    GlobalRef,
    PickleHooks,
    Value,
    analyse_one,
    analyse_stream,
)
from mamori.scan.pickle.values import Container, to_literal

__all__ = ["WRAPPER_DOTTED", "JoblibHandler", "JoblibHooks", "scan_joblib"]

_WRAPPER: Final = GlobalRef("joblib.numpy_pickle", "NumpyArrayWrapper")
# joblib < 0.10 kept arrays in companion files next to the dump, named in the wrapper state.
_LEGACY_WRAPPERS: Final = frozenset(
    {
        GlobalRef("joblib.numpy_pickle", "NDArrayWrapper"),
        GlobalRef("joblib.numpy_pickle", "ZNDArrayWrapper"),
        GlobalRef("joblib.numpy_pickle_compat", "NDArrayWrapper"),
        GlobalRef("joblib.numpy_pickle_compat", "ZNDArrayWrapper"),
    }
)
_ALL_WRAPPERS: Final = _LEGACY_WRAPPERS | {_WRAPPER}
# Helpers that return ``cls.__new__(cls, ...)`` for the class given as first argument: what
# protocol 0/1 and 2+ picklers emit for objects (copyreg) and ``object.__new__`` itself.
# Python 2 spellings are what the unpickler's fix_imports maps to these.
_CONSTRUCTORS: Final = frozenset(
    {
        GlobalRef("copyreg", "_reconstructor"),
        GlobalRef("copy_reg", "_reconstructor"),
        GlobalRef("copyreg", "__newobj__"),
        GlobalRef("copyreg", "__newobj_ex__"),
        GlobalRef("builtins", "object.__new__"),
        GlobalRef("__builtin__", "object.__new__"),
    }
)
_AMBIGUOUS: Final = "ambiguous"
_MENTION_DEPTH: Final = 6
_MENTION_WIDTH: Final = 64
_DTYPE: Final = frozenset(
    {GlobalRef("numpy", "dtype"), GlobalRef("numpy.core.multiarray", "dtype")}
)
_WRAPPER_KEYS: Final = frozenset({"subclass", "shape", "order", "dtype", "allow_mmap"})
_ALIGN_KEY: Final = "numpy_array_alignment_bytes"
_HASOBJECT_FLAG: Final = 0x01  # NPY_ITEM_HASOBJECT in the pickled dtype state's flags
_DTYPE_STATE_ELSIZE: Final = 5
_DTYPE_STATE_FLAGS: Final = 7
_DTYPE_STATE_LEN: Final = 8
_SKIP_CHUNK: Final = 1 << 20
_FLEXIBLE_KINDS: Final = frozenset("SUV")  # bytes, text, void/structured: sized by the state


def _dtype_info(value: Value) -> DTypeInfo | str:  # noqa: PLR0911 - one return per check
    """Size a pickled ``numpy.dtype(descr, align, copy)`` with its BUILD state."""
    if not isinstance(value, Call) or value.func not in _DTYPE:
        return f"dtype is not a numpy.dtype call: {value!r}"[:200]
    args = to_literal(value.args)
    if not isinstance(args, tuple) or not args or not isinstance(args[0], str):
        return "numpy.dtype arguments are not a literal type string"
    try:
        info = typestr_info(args[0])
    except NpyHeaderError as exc:
        return str(exc)
    if len(value.state) != 1:
        return "numpy.dtype received no or several states"
    # Structured dtypes keep nested dtype calls in ``fields``: read the tuple itself rather
    # than its literal form, only the scalar slots are needed.
    state = value.state[0]
    # (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata]):
    # numpy/_core/src/multiarray/descriptor.c, arraydescr_reduce.
    if not isinstance(state, tuple) or len(state) not in (_DTYPE_STATE_LEN, _DTYPE_STATE_LEN + 1):
        return "numpy.dtype state is not the tuple numpy writes"
    elsize, flags = state[_DTYPE_STATE_ELSIZE], state[_DTYPE_STATE_FLAGS]
    if not _is_int(elsize) or not _is_int(flags) or elsize < -1:
        return "numpy.dtype state has a bad size or flags"
    if state[2] is not None:
        return "sub-array dtypes are not supported"
    # Size and object-ness must be what numpy computes, or the scanner skips a different
    # number of bytes than joblib reads (measured with numpy 2.4 ``dtype.__setstate__``):
    # * flexible kinds (S, U, V, structured) take ``elsize`` from the state, so 'U5' with
    #   elsize 100 is U25; other kinds ignore it ('f8' with elsize 100 stays 8 bytes);
    # * ``hasobject`` is the state's flags bit alone: 'O8' with flags 0 is read as 8-byte
    #   numeric data, 'f8' with the bit set as a nested pickle.
    kind = args[0].lstrip("<>|=")[:1]
    itemsize = elsize if kind in _FLEXIBLE_KINDS and elsize >= 0 else info.itemsize
    return DTypeInfo(itemsize, has_object=bool(flags & _HASOBJECT_FLAG))


def _flags_contradict(value: Value, dtype: DTypeInfo) -> bool:
    """An unstructured dtype whose object flag disagrees with its kind.

    numpy trusts the pickled flags: an 'O' dtype without the flag makes joblib build an
    object array straight from the file's bytes (raw pointers), and a numeric one with the
    flag makes it unpickle a nested stream where a reader of the dtype expects numbers.
    """
    assert isinstance(value, Call)
    args = to_literal(value.args)
    state = value.state[0]
    assert isinstance(args, tuple)
    assert isinstance(state, tuple)
    structured = state[3] is not None
    kind_is_object = str(args[0]).lstrip("<>|=")[:1] == "O"
    return not structured and kind_is_object != dtype.has_object


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class JoblibHooks(PickleHooks):
    """Consumes the bytes joblib splices in after each ``NumpyArrayWrapper`` BUILD."""

    def __init__(self, ctx: ScanContext) -> None:
        """Report through ``ctx``."""
        self.ctx = ctx
        self.arrays = 0
        self.resumes: set[int] = set()
        """Offsets where the pickle resumes after inline data this hook consumed."""

    def on_build(self, target: Value, state: Value, stream: IO[bytes], offset: int) -> None:
        """Skip or analyse the inline array data that follows a wrapper's BUILD."""
        wrapper = wrapper_class(target)
        if wrapper is None:
            return
        if wrapper == _AMBIGUOUS:
            self.ctx.report(
                "MAM-JOBLIB-005",
                "BUILD on an object that may be a joblib array wrapper, made in a way the "
                "scanner cannot follow; joblib.load would read raw bytes after it that the "
                "scanner reads as opcodes",
                offset=offset,
            )
            return
        if wrapper in _LEGACY_WRAPPERS:
            literal = to_literal(state)
            name = literal.get("filename") if isinstance(literal, dict) else None
            self.ctx.report(
                "MAM-JOBLIB-003",
                "legacy joblib array wrapper: joblib.load opens a companion file next to the "
                "dump with numpy, pickles allowed",
                offset=offset,
                evidence=repr(name)[:200],
            )
            return
        self.arrays += 1
        fields = to_literal_dict(state)
        problem = _wrapper_problem(fields)
        if problem is not None:
            self.ctx.report("MAM-JOBLIB-002", problem, offset=offset)
            return
        assert fields is not None
        dtype = _dtype_info(fields["dtype"])
        if isinstance(dtype, str):
            self.ctx.report("MAM-JOBLIB-002", dtype, offset=offset)
            return
        if _flags_contradict(fields["dtype"], dtype):
            self.ctx.report(
                "MAM-JOBLIB-002",
                "the dtype's object flag contradicts its type; numpy follows the flag",
                offset=offset,
            )
        if dtype.has_object:
            # joblib: pickle.dump(array, file, protocol=5) inline; read by a fresh Unpickler.
            analyse_one(stream, self.ctx, offset_base=offset)
        else:
            self._skip_numeric(fields, dtype, stream, offset)
        self.resumes.add(stream.tell())

    def _skip_numeric(
        self, fields: dict[str, Value], dtype: DTypeInfo, stream: IO[bytes], offset: int
    ) -> None:
        align = fields.get(_ALIGN_KEY)
        pos = offset
        if align is not None:
            pad = stream.read(1)
            if not pad:
                self.ctx.report("MAM-JOBLIB-001", "stream ends before the padding byte", offset=pos)
                return
            length = pad[0]
            pos += 1
            padding = stream.read(length)
            pos += len(padding)
            if len(padding) != length:
                self.ctx.report("MAM-JOBLIB-001", "stream ends inside the padding", offset=pos)
                return
            if (
                not isinstance(align, int)
                or length == 0
                or length > align
                or padding != b"\xff" * length
                or pos % align
            ):
                # joblib writes 1..align bytes of 0xff so that the data starts aligned; anything
                # else is bytes joblib skips unread.
                self.ctx.report(
                    "MAM-JOBLIB-001",
                    f"padding of {length} bytes is not what joblib writes",
                    offset=offset,
                    evidence=padding[:32].hex(),
                )
        shape = fields["shape"]
        assert isinstance(shape, tuple)
        want = dtype.itemsize * math.prod(shape)  # type: ignore[arg-type]  # checked ints
        got = _skip(stream, want, self.ctx)
        if got < want:
            self.ctx.report(
                "MAM-JOBLIB-001",
                f"array data is truncated: {got} of {want} bytes",
                offset=pos + got,
                evidence=f"shape={shape}",
            )


def wrapper_class(target: Value) -> GlobalRef | str | None:
    """Which wrapper class ``target`` is an instance of, as ``isinstance`` would decide.

    joblib's ``NumpyUnpickler.load_build`` checks ``isinstance(stack[-1], (NDArrayWrapper,
    NumpyArrayWrapper))`` after every BUILD, however the object was made: by calling the class,
    NEWOBJ, or a constructor helper such as ``copyreg._reconstructor(cls, object, None)``.
    Those are mirrored. Any other object whose construction involves a wrapper class (a
    computed call, ``getattr(cls, "__new__")``...) may be an instance too: that is reported
    as an ambiguity (``_AMBIGUOUS``) rather than guessed.
    """
    if not isinstance(target, Call):
        return None
    direct = _direct_instance(target)
    if direct is not None:
        return direct
    if _mentions_wrapper((target.func, target.args, target.kwargs), _MENTION_DEPTH):
        return _AMBIGUOUS
    return None


def _direct_instance(call: Call) -> GlobalRef | None:
    """The wrapper class ``call`` instantiates: the class called, or a copyreg helper on it."""
    func = call.func
    if not isinstance(func, GlobalRef):
        return None
    if func in _ALL_WRAPPERS:
        return func
    if func in _CONSTRUCTORS:
        args = call.args
        first = args[0] if isinstance(args, tuple) and args else None
        if isinstance(first, GlobalRef) and first in _ALL_WRAPPERS:
            return first
    return None


def _mentions_wrapper(value: Value, depth: int) -> bool:  # noqa: PLR0911 - one return per kind
    """Whether a wrapper class appears in ``value`` (bounded walk; unknown depth counts)."""
    if isinstance(value, GlobalRef):
        return value in _ALL_WRAPPERS
    if depth <= 0:
        return False
    if isinstance(value, tuple):
        return any(_mentions_wrapper(v, depth - 1) for v in value[:_MENTION_WIDTH])
    if isinstance(value, Call):
        if _direct_instance(value) is not None:
            return False  # a wrapper joblib already replaced by its array
        return _mentions_wrapper((value.func, value.args, value.kwargs), depth - 1)
    if isinstance(value, Container):
        return any(_mentions_wrapper(v, depth - 1) for v in value.items[:_MENTION_WIDTH])
    return False


def to_literal_dict(state: Value) -> dict[str, Value] | None:
    """The wrapper state as a ``{str: Value}`` dict, keeping symbolic values (the dtype)."""
    if not isinstance(state, DictV) or state.dropped:
        return None
    out: dict[str, Value] = {}
    for key, value in state.pairs():
        if not isinstance(key, str) or key in out:
            return None
        out[key] = value
    return out


def _wrapper_problem(fields: dict[str, Value] | None) -> str | None:
    if fields is None:
        return "wrapper state is not a dict with string keys"
    keys = set(fields)
    if not keys >= _WRAPPER_KEYS or not keys <= _WRAPPER_KEYS | {_ALIGN_KEY}:
        return f"wrapper state has keys {sorted(keys)}"
    shape = fields["shape"]
    if not isinstance(shape, tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        return f"wrapper shape is not a tuple of non-negative integers: {shape!r}"[:200]
    if fields["order"] not in ("C", "F"):
        return f"wrapper order {fields['order']!r} is neither 'C' nor 'F'"[:200]
    align = fields.get(_ALIGN_KEY)
    if align is not None and (not isinstance(align, int) or isinstance(align, bool) or align <= 0):
        return f"alignment {align!r} is not a positive integer"[:200]
    return None


def _skip(stream: IO[bytes], n: int, ctx: ScanContext) -> int:
    done = 0
    while done < n:
        chunk = stream.read(min(_SKIP_CHUNK, n - done))
        if not chunk:
            break
        done += len(chunk)
        ctx.check_deadline()
    return done


class JoblibHandler(FormatHandler):
    """Uncompressed joblib dumps: the pickle analysed with inline array data consumed."""

    format = FileFormat.JOBLIB
    refines = FileFormat.PICKLE

    def sniff(self, probe: Probe) -> bool:
        """A binary pickle (protocol >= 2) that names joblib's array wrapper early on."""
        head = probe.head
        return (
            len(head) > 2  # noqa: PLR2004 - PROTO and its argument
            and head[0] == 0x80  # noqa: PLR2004 - PROTO opcode
            and 2 <= head[1] <= 5  # noqa: PLR2004 - binary protocols
            and b"joblib.numpy_pickle" in head
        )

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Analyse the one pickle joblib.load reads; anything after it is a finding."""
        scan_joblib(source, ctx)


WRAPPER_DOTTED: Final = _WRAPPER.dotted
"""The global that marks a joblib dump (for handlers that meet it late: the PICKLE one)."""


def scan_joblib(source: Source, ctx: ScanContext) -> None:
    """Analyse ``source`` as joblib.load reads it: one pickle with inline array data."""
    hooks = JoblibHooks(ctx)
    # joblib commits the current FRAME before writing array bytes and opens a new one
    # after them (numpy_pickle.py, NumpyPickler.save), so the opcode after inline data
    # legitimately follows the end of a frame: that one framing finding does not apply.
    scoped = MemberContext(
        ctx,
        None,
        # The wrapper only carries shape/order/dtype attributes; the hook checks them.
        extra_allowed=frozenset({_WRAPPER.dotted}),
        drop=lambda f: f.rule_id == "MAM-PKL-016" and f.location.offset in hooks.resumes,
    )
    with source.open() as stream:
        result = analyse_one(stream, scoped, hooks=hooks)
        if not result.complete:
            return
        rest = stream.read(1)
        if rest:
            ctx.report(
                "MAM-JOBLIB-004",
                "bytes follow the joblib pickle; joblib.load never reads them",
                offset=result.end,
            )
            analyse_stream(pushback(rest, stream), ctx, offset_base=result.end)
