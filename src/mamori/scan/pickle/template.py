"""Template runs: consume repeated, identically-shaped entries of a big batch at regex speed.

Big opcode-dense pickles are mostly long ``MARK ... SETITEMS`` (or ``APPENDS``) batches whose
entries all have the same opcode shape (``'k12': [12, 12.0, 's12', (12, 13)]``). Once the
target container is past its keep cap, the analyser only needs to *count* those entries:
they are plain data, so they import and call nothing.

The matcher reads one entry's opcodes (the *unit*), checking the same stack rules the
reference interpreter applies, and compiles a regex that accepts exactly that opcode shape
with any argument values (any int width, any float, any ASCII string up to 255 bytes). The
regex then consumes as many following units as match, within the current window and FRAME,
in C. Because every matched unit has the same opcode sequence as the checked one, it has the
same stack and memo effect; the run becomes one :class:`LazyBlock` (values rebuilt only if
something ever needs them).
"""

# Opcode bytes are compared by value (0x28 is MARK, named in a comment where it matters).
# ruff: noqa: PLR2004
from __future__ import annotations

import re
import struct
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Final

from mamori.scan.pickle.hot import fast_loop
from mamori.scan.pickle.values import DictV, LazyBlock, ListV, SetV, Value

if TYPE_CHECKING:
    from mamori.scan.pickle.machine import Machine

__all__ = ["Template", "attempt"]

_MIN_RUN: Final = 4
"""Fewer units than this are left to the tight loop; a run costs a few Python calls."""
_MAX_UNIT_OPS: Final = 64
_BACKOFF: Final = 2048


def _lengths(prefix: bytes, body: bytes, width: int) -> bytes:
    alts = [
        re.escape(n.to_bytes(width, "little")) + (body + b"{%d}" % n if n else b"")
        for n in range(256)
    ]
    return prefix + b"(?:" + b"|".join(alts) + b")"


_ASCII = rb"[\x00-\x7f]"
_ANY = rb"[\s\S]"
_INT = rb"(?:K[\s\S]|M[\s\S]{2}|J[\s\S]{4})"
_FLOAT = rb"G[\s\S]{8}"
# Only ASCII strings: they are valid UTF-8 by construction, so the regex cannot accept a
# string the reference path would reject.
_STR = b"(?:" + _lengths(rb"\x8c", _ASCII, 1) + b"|" + _lengths(b"X", _ASCII, 4) + b")"
_SBYTES = _lengths(b"C", _ANY, 1)
_PUT = rb"(?:q([\s\S])|r([\s\S]{4}))"
_NOT_CONTINUED = rb"(?![\x94qr\x85\x86\x87as])"
_MEMOIZE = rb"\x94"

_KIND_OF: Final = {ListV: "L", DictV: "D", SetV: "S"}
_CLOSE_NEEDS: Final = {0x65: "L", 0x75: "D", 0x90: "S"}
_MAKES: Final = {0x74: "v", 0x6C: "L", 0x64: "D", 0x91: "v"}
_PLAIN: Final = {0x4E: "v", 0x88: "v", 0x89: "v", 0x5D: "L", 0x7D: "D", 0x29: "v", 0x8F: "S"}


@dataclass(frozen=True, slots=True)
class Template:
    """One unit shape: a regex that finds a run's extent and counts its units in one pass."""

    scan: re.Pattern[bytes]
    """``(unit)|(?s:.+)``: ``findall`` yields each unit (group 1; with LONG_BINPUT arguments
    as further groups) up to the first position where no unit starts, where the second
    alternative swallows the rest uncaptured. The unit is deterministic (every alternative
    starts with a distinct literal), so the units are exactly the ones a possessive
    ``(?:unit)++`` would match, and contiguous."""
    full: bytes
    """The unit with every BINPUT and LONG_BINPUT argument captured (for the slow check)."""
    items: int
    ops: int
    memos: int
    puts: bool
    gets: tuple[int, ...] = ()
    """Memo slots every unit GETs (literal indices in the regex): plain data, defined before."""


_CACHE: dict[bytes, Template] = {}


_SHORT: Final = object()
"""learn(): the unit runs past the window or FRAME end; try again further on."""


def learn(
    buf: bytes, pos: int, end: int, items: int, plain_slot: Callable[[int], bool]
) -> Template | object | None:
    """Read one unit (``items`` values plus their memo ops) at ``pos``.

    Returns the template, :data:`_SHORT` when the bytes end first, or None when the unit's
    shape is not supported (then the caller backs off). ``plain_slot(idx)`` says whether memo
    slot ``idx`` is defined and holds immutable plain data, which a unit may GET.
    """
    try:
        return _learn(buf, pos, end, items, plain_slot)
    except (IndexError, struct.error):
        return _SHORT


_CONTINUES: Final = frozenset((0x94, 0x71, 0x72, 0x85, 0x86, 0x87, 0x61, 0x73))
_UNIT_STARTS: Final = frozenset(b"KMJG\x8cXCN\x88\x89]})\x8fhj")
"""Where a unit may begin: a value push. A MARK there may instead fill the previous unit's
container, and a closer ends the batch, so neither is a place to learn from."""
"""Opcodes that still belong to the unit after it has pushed its values (memo, merges)."""


class _Unsupported(Exception):  # noqa: N818 - internal control flow
    pass


class _State:
    """The learner's simulated stack: per frame, the kinds of values (L, D, S or v)."""

    def __init__(self, plain_slot: Callable[[int], bool]) -> None:
        self.frames: list[list[str]] = [[]]
        self.parts: list[bytes] = []
        self.ops = 0
        self.memos = 0
        self.puts = 0
        self.gets: list[int] = []
        self.plain_slot = plain_slot


def _learn(
    buf: bytes, pos: int, end: int, items: int, plain_slot: Callable[[int], bool]
) -> Template | object | None:
    st = _State(plain_slot)
    saved: tuple[int, int, int, int, int] | None = None
    try:
        while pos < end:
            pos = _one(st, buf, pos)
            if pos > end:
                return _SHORT
            frames = st.frames
            if len(frames) == 1 and len(frames[0]) > items:
                # The last MARK started the next unit's value rather than filling this
                # unit's container: the unit ended at the checkpoint.
                raise _Unsupported  # noqa: TRY301 - handled below with the checkpoint
            if len(frames) == 1 and len(frames[0]) == items and pos < end:
                if buf[pos] == 0x28:  # MARK: it may still fill this unit's container
                    saved = (len(st.parts), st.ops, st.memos, st.puts, len(st.gets))
                elif buf[pos] not in _CONTINUES:
                    return _finish(st.parts, items, st.ops, st.memos, st.puts, gets=st.gets)
    except _Unsupported:
        if saved is None:
            return None
        n_parts, ops, memos, puts, n_gets = saved
        return _finish(st.parts[:n_parts], items, ops, memos, puts, gets=st.gets[:n_gets])
    return _SHORT


def _finish(
    parts: list[bytes], items: int, ops: int, memos: int, puts: int, *, gets: list[int]
) -> Template | None:
    if memos and puts:
        return None
    return _compile(
        b"".join(parts), items, ops, memos + puts, puts=bool(puts), gets=tuple(sorted(set(gets)))
    )


def _one(st: _State, buf: bytes, pos: int) -> int:  # noqa: C901, PLR0912, PLR0915 - one opcode dispatch
    """Check one opcode against the reference rules; return the next position."""
    frames = st.frames
    cur = frames[-1]
    parts = st.parts
    op = buf[pos]
    if op in (0x4B, 0x4D, 0x4A):
        pos += {0x4B: 2, 0x4D: 3, 0x4A: 5}[op]
        cur.append("v")
        parts.append(_INT)
    elif op == 0x47:
        pos += 9
        cur.append("v")
        parts.append(_FLOAT)
    elif op in (0x8C, 0x58):
        if op == 0x8C:
            n, head = buf[pos + 1], 2
        else:
            n, head = struct.unpack_from("<I", buf, pos + 1)[0], 5
        data = buf[pos + head : pos + head + n]
        if n > 255:  # the regex enumerates lengths up to 255
            raise _Unsupported
        if len(data) < n:
            raise IndexError
        if not data.isascii():
            raise _Unsupported
        pos += head + n
        cur.append("v")
        parts.append(_STR)
    elif op == 0x43:
        pos += 2 + buf[pos + 1]
        cur.append("v")
        parts.append(_SBYTES)
    elif op in (0x88, 0x89):  # NEWTRUE, NEWFALSE: either, so that a bool column repeats
        pos += 1
        cur.append("v")
        parts.append(rb"[\x88\x89]")
    elif op in _PLAIN:
        pos += 1
        cur.append(_PLAIN[op])
        parts.append(re.escape(bytes([op])))
    elif op == 0x28:
        pos += 1
        frames.append([])
        parts.append(rb"\(")
    elif op in (0x68, 0x6A):  # BINGET, LONG_BINGET of a slot defined before the unit
        size = 2 if op == 0x68 else 5
        arg = buf[pos + 1 : pos + size]
        if len(arg) < size - 1:
            raise IndexError
        idx = arg[0] if op == 0x68 else struct.unpack("<I", arg)[0]
        if not st.plain_slot(idx):
            raise _Unsupported
        # The index is matched literally: every unit of the run GETs the same plain value.
        parts.append(re.escape(buf[pos : pos + size]))
        st.gets.append(idx)
        cur.append("v")
        pos += size
    elif op in (0x94, 0x71, 0x72):
        if not cur:
            raise _Unsupported
        if op == 0x94:
            st.memos += 1
            parts.append(_MEMOIZE)
            pos += 1
        else:
            st.puts += 1
            parts.append(_PUT)
            pos += 2 if op == 0x71 else 5
    elif op in _CLOSE_NEEDS or op in _MAKES:
        if len(frames) == 1:
            raise _Unsupported
        inner = frames.pop()
        if op in (0x75, 0x64) and len(inner) % 2:
            raise _Unsupported
        if op in _CLOSE_NEEDS:
            target = frames[-1]
            if not target or target[-1] != _CLOSE_NEEDS[op]:
                raise _Unsupported
        else:
            frames[-1].append(_MAKES[op])
        pos += 1
        parts.append(re.escape(bytes([op])))
    elif op in (0x85, 0x86, 0x87):
        arity = op - 0x84
        if len(cur) < arity:
            raise _Unsupported
        del cur[len(cur) - arity :]
        cur.append("v")
        pos += 1
        parts.append(re.escape(bytes([op])))
    elif op in (0x61, 0x73):  # APPEND, SETITEM
        arity = 1 if op == 0x61 else 2
        if len(cur) < arity + 1 or cur[-arity - 1] != ("L" if op == 0x61 else "D"):
            raise _Unsupported
        del cur[len(cur) - arity :]
        pos += 1
        parts.append(re.escape(bytes([op])))
    else:
        raise _Unsupported
    st.ops += 1
    if st.ops > _MAX_UNIT_OPS:
        raise _Unsupported
    return pos


def _compile(
    pattern: bytes, items: int, ops: int, memos: int, *, puts: bool, gets: tuple[int, ...]
) -> Template:
    key = pattern
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    # A unit never ends right before an opcode that would still act on its values (a memo
    # op, a tuple merge): then it is only the front of a differently shaped entry.
    pattern += _NOT_CONTINUED
    bare = pattern.replace(_PUT, rb"(?:q[\s\S]|r[\s\S]{4})")
    # Counting units: capture only LONG_BINPUT arguments (checked in bulk), or nothing.
    unit = pattern.replace(_PUT, rb"(?:q[\s\S]|r([\s\S]{4}))") if puts else bare
    template = Template(
        scan=re.compile(b"(" + unit + b")|(?s:.+)"),
        full=pattern,
        items=items,
        ops=ops,
        memos=memos,
        puts=puts,
        gets=gets,
    )
    if len(_CACHE) < 64:  # a handful of shapes per file; bound the cache
        _CACHE[key] = template
    return template


def attempt(m: Machine) -> bool:  # noqa: C901, PLR0911, PLR0912, PLR0915 - a sequence of cheap guards
    """Consume a run of template units at the current position; True when it did."""
    if m.template_wait > m.trace.opcodes or not m.memo_dense:
        return False
    below = m.metastack[-1] if m.metastack else None
    target = below[-1] if below else None
    kind = type(target)
    if kind not in _KIND_OF or not target.dropped:  # type: ignore[union-attr]  # kind checked
        return False
    items = 2 if kind is DictV else 1
    if not _seek_boundary(m, m.stack, items):
        return False
    w = m.w
    buf = w.buf
    pos = w.pos
    end = len(buf)
    if m.frame_end >= 0:
        end = min(end, m.frame_end - w.base)
    if m.max_opcodes - m.trace.opcodes < end - pos:
        return False  # near the opcode limit the exact per-opcode count matters
    template = m.templates.get(kind)
    count, stop, args = _scan(template, buf, pos, end) if template is not None else (0, pos, b"")
    if not count:
        learned = learn(buf, pos, end, items, partial(_plain_slot, m))
        if learned is None:
            m.template_wait = m.trace.opcodes + _BACKOFF
            return False
        if learned is _SHORT:
            return False  # the unit is cut by the window or a FRAME: retry after it
        assert isinstance(learned, Template)
        template = learned
        count, stop, args = _scan(template, buf, pos, end)
        if not count:
            return False
        m.templates[kind] = template
    assert template is not None
    if count < _MIN_RUN:
        m.template_wait = m.trace.opcodes + _BACKOFF
        return False
    memo_start = len(m.memo) + m.memo_extra
    memo_count = count * template.memos
    if memo_start + memo_count > m.max_memo:
        return False  # the slots one at a time, so that the limit is reported exactly
    if template.puts and not _sequential(
        template, args, buf, (pos, stop), start=memo_start, count=memo_count
    ):
        m.template_wait = m.trace.opcodes + _BACKOFF
        return False
    gets: dict[int, Value] | None = None
    if template.gets:
        if not all(_plain_slot(m, idx) for idx in template.gets):
            # A template learned earlier; a PUT has replaced the slot's value since.
            m.templates.pop(kind, None)
            m.template_wait = m.trace.opcodes + _BACKOFF
            return False
        gets = {idx: m.memo[idx] for idx in template.gets}
    block = LazyBlock(
        w.base + pos,
        w.base + stop,
        count * template.items,
        memo_start,
        memo_count,
        puts=template.puts,
        frame=m.stack,
        gets=gets,
    )
    m.stack.append(block)
    m.block_frames[id(m.stack)] = m.block_frames.get(id(m.stack), 0) + 1
    if memo_count:
        m.segments.append(block)
        m.memo_extra += memo_count
    w.pos = stop
    m.trace.opcodes += count * template.ops
    if m.trace.opcodes >= m.next_check:
        m.next_check = m.trace.opcodes + (1 << 16)
        m.deadline()
    return True


_PLAIN_TYPES: Final = frozenset({str, bytes, int, float, bool, type(None)})


def _plain_slot(m: Machine, idx: int) -> bool:
    """True when memo slot ``idx`` is defined and holds an immutable plain value.

    A slot held compactly or by a lazy run is brought back into ``m.memo`` first (exactly the
    value the reference path holds there).
    """
    if idx not in m.memo and not (
        m.memo_extra and m.on_missing_slot is not None and m.on_missing_slot(m, idx)
    ):
        return False
    return type(m.memo.get(idx)) in _PLAIN_TYPES


def _seek_boundary(m: Machine, frame: list[Value], items: int) -> bool:
    """Run single opcodes until the batch frame holds whole units; False if that fails."""
    for _ in range(_MAX_UNIT_OPS):
        w = m.w
        if (
            m.stack is frame
            and (len(frame) - m.block_frames.get(id(frame), 0)) % items == 0
            and w.pos < len(w.buf)
            and w.buf[w.pos] in _UNIT_STARTS
        ):
            return True
        if not fast_loop(m, chunk=1):
            return False
    return False


_SPAN: Final = 1 << 16
"""Bytes per ``findall``, so that the list of matched units it returns stays small (at most
32768 two-byte units) however big the window is. Longer than any unit (at most 64 opcodes of
at most 260 bytes each), so every span but the last yields units."""
_ARGS: Final = itemgetter(slice(1, None))


def _scan(template: Template, buf: bytes, pos: int, end: int) -> tuple[int, int, bytes]:
    """Units of ``template`` from ``pos``: their count, where they stop, LONG_BINPUT args."""
    count = 0
    at = pos
    args: list[bytes] = []
    puts = template.puts
    while at < end:
        bound = min(end, at + _SPAN)
        found = template.scan.findall(buf, at, bound)
        tail = bool(found) and not (found[-1][0] if puts else found[-1])
        if tail:
            found.pop()  # where no unit starts: the rest of the span, uncaptured
        elif bound < end and found:
            # The last unit ends exactly at the span's bound, where its lookahead saw no
            # next opcode: leave it to the next span, which sees that opcode.
            found.pop()
        if puts:
            at += sum(map(len, map(itemgetter(0), found)))
            args.extend(chain.from_iterable(map(_ARGS, found)))
        else:
            at += sum(map(len, found))
        count += len(found)
        if (tail and bound == end) or not found:
            break
    return count, at, b"".join(args)


_U32: Final = array("I")


def _sequential(
    template: Template,
    joined: bytes,
    buf: bytes,
    span: tuple[int, int],
    *,
    start: int,
    count: int,
) -> bool:
    """True when the run's ``count`` BINPUT/LONG_BINPUT indices are ``start, start+1, ...``.

    ``joined`` is every LONG_BINPUT argument of the run (a BINPUT captures nothing).
    """
    if len(joined) == 4 * count and _U32.itemsize == 4:
        # Every put was LONG_BINPUT: compare in bulk.
        expected = array(_U32.typecode, range(start, start + count))
        if sys.byteorder != "little":
            expected.byteswap()
        return joined == expected.tobytes()
    # Some BINPUTs (indices below 256): read every argument.
    every = re.compile(template.full).findall(buf, *span)
    flat = list(chain.from_iterable(every))
    pairs = zip(flat[0::2], flat[1::2], strict=True)
    indices = [s[0] if s else struct.unpack("<I", lg)[0] for s, lg in pairs]
    return indices == list(range(start, start + count))
