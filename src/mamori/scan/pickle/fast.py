"""The hot loop: a tight loop over the window for the data opcodes that dominate big pickles.

It handles the opcodes whose effect is plain data (scalars, strings, containers, memo), plus
REDUCE and BINPERSID through the interpreter's own effect methods (one of each per tensor in
a torch pickle), and does exactly what :meth:`Machine.step` does for them, with the
interpreter state held in local variables. Anything else, anything that would fail, and
anything near the end of the window or of a FRAME stops the loop *before* the opcode, so the
reference interpreter executes that opcode (and reports the exact error).
``tests/scan/pickle/test_differential.py`` checks with Hypothesis that both paths give
identical results.
"""

# Opcode bytes are compared by value throughout (0x8C is SHORT_BINUNICODE, named in a
# comment on each branch); 68 named constants would hide the byte being matched.
# ruff: noqa: PLR2004
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final

from mamori.scan.pickle.machine import CHECK_EVERY
from mamori.scan.pickle.reader import KEEP_LIMIT
from mamori.scan.pickle.values import (
    CallKind,
    DictV,
    FrozenSetV,
    LazyBlock,
    ListV,
    SetV,
    Value,
)

if TYPE_CHECKING:
    # Only Cython reads these annotations (``pos: cython.Py_ssize_t`` makes ``buf[pos]`` a
    # bounds-checked C byte read); to Python they are unevaluated strings.
    import cython

    from mamori.scan.pickle.machine import Machine

__all__ = ["fast_loop"]

_unpack_f64 = struct.Struct(">d").unpack_from
_unpack_i32 = struct.Struct("<i").unpack_from
_unpack_u32 = struct.Struct("<I").unpack_from
_unpack_u16 = struct.Struct("<H").unpack_from
_MISSING: Final = object()
_CONTAINERS: Final = (ListV, DictV, SetV)
_MAX_FIXED: Final = 9
"""Longest fixed-size opcode with its argument (BINFLOAT, FRAME)."""
_HUGE: Final = 1 << 62
"""Configured limits are clamped to this, so that they fit a C ``Py_ssize_t`` when compiled."""


def fast_loop(  # noqa: C901, PLR0912, PLR0915 - one dispatch on the opcode
    m: Machine, chunk: int | None = None, *, realign: bool = False
) -> bool:
    """Run data opcodes from the window's position until one needs the reference path.

    With ``chunk``, stop after that many opcodes (returning True) so the caller can try a
    template run; otherwise return False when an opcode needs the reference path. With
    ``realign`` too, also stop (returning True) right after an opcode closes a frame back to
    one that fills a capped container: after a FRAME or a window refill the loop resumes in
    the middle of an entry, and a template run can start again at the next entry instead of
    a whole chunk later.
    """
    w = m.w
    buf: bytes = w.buf
    pos: cython.Py_ssize_t = w.pos
    hard: cython.Py_ssize_t = len(buf)
    e: cython.Py_ssize_t
    n: cython.Py_ssize_t
    idx: cython.Py_ssize_t
    op: cython.int
    if m.frame_end >= 0:
        # Stop at the frame's end so the reference path does the FRAME bookkeeping. A Python
        # int first: a hostile FRAME length does not fit 64 bits.
        frame_left = m.frame_end - w.base
        hard = min(hard, frame_left)
    limit: cython.Py_ssize_t = min(hard, len(buf) - _MAX_FIXED)
    if pos >= limit:
        return False
    tr = m.trace
    ops: cython.Py_ssize_t = tr.opcodes
    budget: cython.Py_ssize_t = min(m.max_opcodes, _HUGE)
    chunked = chunk is not None and ops + chunk < budget
    realign = realign and chunked
    if chunk is not None:
        budget = min(budget, ops + chunk)
    extra: cython.Py_ssize_t = m.memo_extra
    max_memo: cython.Py_ssize_t = min(m.max_memo, _HUGE)
    blocks = m.block_frames
    memo = m.memo
    stack: list[Value] = m.stack
    metastack = m.metastack
    # The effects of the code-running opcodes are shared with the reference path, so that
    # REDUCE and BINPERSID (one per tensor in a torch pickle) need no hand-over.
    call = m._call  # noqa: SLF001 - the interpreter's own effect, shared on purpose
    persistent = m._persistent  # noqa: SLF001 - idem
    try:
        while pos < limit and ops < budget:
            op = buf[pos]
            if op == 0x94:  # MEMOIZE
                if not stack or (blocks and type(stack[-1]) is LazyBlock):
                    break
                idx = len(memo) + extra
                if idx >= max_memo:
                    break  # the reference path reports the memo limit
                memo[idx] = stack[-1]
                pos += 1
            elif op == 0x8C:  # SHORT_BINUNICODE
                e = pos + 2 + buf[pos + 1]
                if e > hard:
                    break
                stack.append(buf[pos + 2 : e].decode("utf-8", "surrogatepass"))
                pos = e
            elif op == 0x71:  # BINPUT
                idx = buf[pos + 1]
                if not stack or (blocks and type(stack[-1]) is LazyBlock):
                    break
                if idx not in memo and (idx != len(memo) + extra or idx >= max_memo):
                    break  # a slot held elsewhere, a gap or the memo limit: reference decides
                memo[idx] = stack[-1]
                pos += 2
            elif op == 0x4B:  # BININT1
                stack.append(buf[pos + 1])
                pos += 2
            elif op == 0x58:  # BINUNICODE
                n = _unpack_u32(buf, pos + 1)[0]
                e = pos + 5 + n
                if e > hard or n > KEEP_LIMIT:
                    break
                stack.append(buf[pos + 5 : e].decode("utf-8", "surrogatepass"))
                pos = e
            elif op == 0x47:  # BINFLOAT
                stack.append(_unpack_f64(buf, pos + 1)[0])
                pos += 9
            elif op == 0x28:  # MARK
                metastack.append(stack)
                below_top = stack[-1] if stack else None
                stack = []
                pos += 1
                if chunked and type(below_top) in _CONTAINERS and below_top.dropped:  # type: ignore[union-attr]  # type checked
                    # A batch into a container past its cap: a template run may start here.
                    ops += 1
                    budget = ops
                    break
            elif op == 0x86:  # TUPLE2
                if len(stack) < 2 or (blocks and _lazy_in(stack, 2)):
                    break
                b = stack.pop()
                stack[-1] = (stack[-1], b)
                pos += 1
            elif op == 0x65:  # APPENDS
                if not metastack or (blocks and id(stack) in blocks):
                    break
                below = metastack[-1]
                if not below or type(below[-1]) is not ListV:
                    break
                below[-1].extend(stack)
                stack = metastack.pop()
                pos += 1
                if realign and _fills_capped(metastack):
                    ops += 1
                    budget = ops
                    break
            elif op == 0x75:  # SETITEMS
                if not metastack or len(stack) % 2 or (blocks and id(stack) in blocks):
                    break
                below = metastack[-1]
                if not below or type(below[-1]) is not DictV:
                    break
                below[-1].extend(stack)
                stack = metastack.pop()
                pos += 1
                if realign and _fills_capped(metastack):
                    ops += 1
                    budget = ops
                    break
            elif op == 0x5D:  # EMPTY_LIST
                stack.append(ListV())
                pos += 1
            elif op == 0x7D:  # EMPTY_DICT
                stack.append(DictV())
                pos += 1
            elif op == 0x72:  # LONG_BINPUT
                idx = _unpack_u32(buf, pos + 1)[0]
                if not stack or (blocks and type(stack[-1]) is LazyBlock):
                    break
                if idx not in memo and (idx != len(memo) + extra or idx >= max_memo):
                    break  # a slot held elsewhere, a gap or the memo limit: reference decides
                memo[idx] = stack[-1]
                pos += 5
            elif op == 0x68:  # BINGET
                value = memo.get(buf[pos + 1], _MISSING)
                if value is _MISSING:
                    break
                stack.append(value)  # type: ignore[arg-type]  # _MISSING excluded above
                pos += 2
            elif op == 0x6A:  # LONG_BINGET
                value = memo.get(_unpack_u32(buf, pos + 1)[0], _MISSING)
                if value is _MISSING:
                    break
                stack.append(value)  # type: ignore[arg-type]  # _MISSING excluded above
                pos += 5
            elif op == 0x4A:  # BININT
                stack.append(_unpack_i32(buf, pos + 1)[0])
                pos += 5
            elif op == 0x4D:  # BININT2
                stack.append(_unpack_u16(buf, pos + 1)[0])
                pos += 3
            elif op == 0x85:  # TUPLE1
                if not stack or (blocks and _lazy_in(stack, 1)):
                    break
                stack[-1] = (stack[-1],)
                pos += 1
            elif op == 0x87:  # TUPLE3
                if len(stack) < 3 or (blocks and _lazy_in(stack, 3)):
                    break
                c = stack.pop()
                b = stack.pop()
                stack[-1] = (stack[-1], b, c)
                pos += 1
            elif op == 0x29:  # EMPTY_TUPLE
                stack.append(())
                pos += 1
            elif op == 0x4E:  # NONE
                stack.append(None)
                pos += 1
            elif op == 0x88:  # NEWTRUE
                stack.append(True)
                pos += 1
            elif op == 0x89:  # NEWFALSE
                stack.append(False)
                pos += 1
            elif op == 0x43:  # SHORT_BINBYTES
                e = pos + 2 + buf[pos + 1]
                if e > hard:
                    break
                stack.append(buf[pos + 2 : e])
                pos = e
            elif op == 0x42:  # BINBYTES
                n = _unpack_u32(buf, pos + 1)[0]
                e = pos + 5 + n
                if e > hard or n > KEEP_LIMIT:
                    break
                stack.append(buf[pos + 5 : e])
                pos = e
            elif op == 0x55:  # SHORT_BINSTRING
                e = pos + 2 + buf[pos + 1]
                if e > hard:
                    break
                stack.append(buf[pos + 2 : e].decode("latin-1"))
                pos = e
            elif op == 0x8A:  # LONG1
                e = pos + 2 + buf[pos + 1]
                if e > hard:
                    break
                stack.append(int.from_bytes(buf[pos + 2 : e], "little", signed=True))
                pos = e
            elif op == 0x61:  # APPEND
                if (
                    len(stack) < 2
                    or type(stack[-2]) is not ListV
                    or (blocks and _lazy_in(stack, 1))
                ):
                    break
                item = stack.pop()
                stack[-1].extend([item])  # type: ignore[union-attr]  # checked just above
                pos += 1
            elif op == 0x73:  # SETITEM
                if (
                    len(stack) < 3
                    or type(stack[-3]) is not DictV
                    or (blocks and _lazy_in(stack, 2))
                ):
                    break
                v = stack.pop()
                k = stack.pop()
                stack[-1].extend([k, v])  # type: ignore[union-attr]  # checked just above
                pos += 1
            elif op == 0x8F:  # EMPTY_SET
                stack.append(SetV())
                pos += 1
            elif op == 0x90:  # ADDITEMS
                if not metastack or (blocks and id(stack) in blocks):
                    break
                below = metastack[-1]
                if not below or type(below[-1]) is not SetV:
                    break
                below[-1].extend(stack)
                stack = metastack.pop()
                pos += 1
                if realign and _fills_capped(metastack):
                    ops += 1
                    budget = ops
                    break
            elif op == 0x52:  # REDUCE
                if len(stack) < 2 or (blocks and _lazy_in(stack, 2)):
                    break
                args = stack.pop()
                tr.pure = False
                stack[-1] = call(stack[-1], args, CallKind.REDUCE, w.base + pos)
                pos += 1
            elif op == 0x51:  # BINPERSID
                if not stack or (blocks and type(stack[-1]) is LazyBlock):
                    break
                pid = stack.pop()
                m.stack = stack  # persistent() pushes onto the machine's current frame
                persistent(pid, w.base + pos)
                pos += 1
            elif op in (0x74, 0x6C, 0x64, 0x91):  # TUPLE, LIST, DICT, FROZENSET
                if (
                    not metastack
                    or (op == 0x64 and len(stack) % 2)
                    or (blocks and id(stack) in blocks)
                ):
                    break
                items = stack
                made: Value
                if op == 0x74:
                    made = tuple(items)
                elif op == 0x91:
                    made = FrozenSetV(tuple(items))
                else:
                    made = ListV() if op == 0x6C else DictV()
                    made.extend(items)
                stack = metastack.pop()
                stack.append(made)
                pos += 1
                if realign and _fills_capped(metastack):
                    ops += 1
                    budget = ops
                    break
            else:
                break
            ops += 1
    except UnicodeDecodeError:
        pass  # the reference path re-reads this opcode and reports the bad string
    finally:
        w.pos = pos
        m.stack = stack
        tr.opcodes = ops
    if ops >= m.next_check:
        m.next_check = ops + CHECK_EVERY
        m.deadline()
    return chunked and ops >= budget


def _fills_capped(metastack: list[list[Value]]) -> bool:
    """True when the current frame's items go into a container past its cap."""
    below = metastack[-1] if metastack else None
    top = below[-1] if below else None
    return type(top) in _CONTAINERS and bool(top.dropped)  # type: ignore[union-attr]  # type checked


def _lazy_in(stack: list[Value], n: int) -> bool:
    """True when one of the top ``n`` stack values is a lazy block."""
    return any(type(v) is LazyBlock for v in stack[-n:])
