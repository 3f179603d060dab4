"""Lazy runs: stretches of a pickle the fast path accounted for without building values.

A :class:`LazyBlock` stands, in one stack frame, for ``items`` plain-data values that the
template matcher (:mod:`mamori.scan.pickle.template`) skipped at regex speed, and in the memo
for the ``memo_count`` slots those values were memoized into. It is only ever created inside
a batch (``MARK ... SETITEMS/APPENDS/ADDITEMS``) whose target container already dropped items
past :data:`~mamori.scan.pickle.values.MAX_KEPT_ITEMS`, so when the batch closes normally the
values are not needed at all: the container only counts them.

Anything else that needs the values (an opcode popping them, a memo GET of one of the slots)
first *materializes* the block: its bytes are read again and run through the reference
interpreter, which gives exactly the values the reference path would have built.
"""

from __future__ import annotations

import io
from bisect import bisect_right
from typing import Final

from mamori.scan.pickle.hot import fast_loop
from mamori.scan.pickle.machine import Machine
from mamori.scan.pickle.reader import Window
from mamori.scan.pickle.values import DictV, LazyBlock, ListV, SetV, Value

__all__ = ["CLOSERS", "materialize", "materialize_frame", "materialize_slot", "prepare_step"]

CLOSERS: Final = {0x65: ListV, 0x75: DictV, 0x90: SetV}
"""APPENDS, SETITEMS, ADDITEMS and the container type each fills."""

# Opcodes the reference path may run with a lazy block in the current frame: they neither
# pop nor peek at the stack.
_SAFE_OPS: Final = frozenset(
    b"KMJGN\x88\x89\x8cXCBUT\x8a\x8b\x8d\x8e\x96FILSV](})\x8f\x95\x80cghjP"
)


_TOUCHES: Final = {
    0x94: 1,
    0x71: 1,
    0x72: 1,
    0x70: 1,  # MEMOIZE, BINPUT, LONG_BINPUT, PUT peek at the top
    0x85: 1,
    0x86: 2,
    0x87: 3,  # TUPLE1-3
    0x61: 2,
    0x73: 3,  # APPEND, SETITEM (and the container they fill)
    0x30: 1,
    0x32: 1,  # POP, DUP
    0x52: 2,
    0x62: 2,
    0x81: 2,
    0x92: 3,
    0x93: 2,  # REDUCE, BUILD, NEWOBJ(_EX), STACK_GLOBAL
    0x51: 1,
    0x98: 1,
    0x2E: 1,  # BINPERSID, READONLY_BUFFER, STOP
}
"""How many values from the top of the stack an opcode reads; the rest read a whole frame."""


def materialize(m: Machine, block: LazyBlock) -> None:
    """Rebuild the block's values exactly (fast loop plus reference steps) and put them in place."""
    data = m.w.read_range(block.start, block.end)
    sub = Machine(
        Window(io.BytesIO(data), block.start, exact=False),
        max_opcodes=1 << 62,
        deadline=m.deadline,
        is_loader=m.is_loader,
    )
    # The sub-machine numbers memo slots absolutely, from the run's first slot; the slots the
    # units GET hold the plain values they held during the run.
    gets = block.gets or {}
    sub.memo.update(gets)
    sub.memo_extra = block.memo_start - len(gets)
    while not sub.w.at_eof():
        fast_loop(sub)  # exact (differential-tested); the reference step finishes each stop
        if not sub.w.at_eof():
            sub.step()
    if block.memo_count:
        for key, value in sub.memo.items():
            if key not in gets:
                m.memo.setdefault(key, value)
        m.memo_extra -= block.memo_count
        m.segments.remove(block)
        block.memo_count = 0
    frame = block.frame
    if frame is not None:
        at = next(i for i, v in enumerate(frame) if v is block)
        frame[at : at + 1] = sub.stack
        block.frame = None
        left = m.block_frames.get(id(frame), 1) - 1
        if left:
            m.block_frames[id(frame)] = left
        else:
            m.block_frames.pop(id(frame), None)


def materialize_frame(m: Machine, frame: list[Value]) -> None:
    """Materialize every block in ``frame``."""
    for value in list(frame):
        if type(value) is LazyBlock:
            materialize(m, value)


def materialize_slot(m: Machine, idx: int) -> bool:
    """Materialize the block holding memo slot ``idx``; False when no block holds it."""
    # Runs are appended in memo order, so their slot ranges are sorted and disjoint.
    at = bisect_right([b.memo_start for b in m.segments], idx) - 1
    if at >= 0:
        block = m.segments[at]
        if idx < block.memo_start + block.memo_count:
            materialize(m, block)
            return True
    return False


def prepare_step(m: Machine) -> bool:  # noqa: C901 - guards, each a case the reference path must see
    """Before a reference step: close or materialize lazy blocks in the current frame.

    Returns True when it executed the next opcode itself (a batch closer whose values the
    container only counts), False when the reference step should run next.
    """
    stack = m.stack
    w = m.w
    if w.pos >= len(w.buf) and not w.fill(1):
        materialize_frame(m, stack)
        return False
    op = w.buf[w.pos]
    below = m.metastack[-1] if m.metastack else None
    if op in CLOSERS and below and type(below[-1]) is LazyBlock:
        # APPENDS/SETITEMS/ADDITEMS fill the value under the MARK: it must be real.
        materialize(m, below[-1])
    if id(stack) not in m.block_frames or op in _SAFE_OPS:
        return False
    touched = _TOUCHES.get(op)
    if touched is not None:
        # A fixed number of values from the top: only blocks among them must be real.
        for value in stack[-touched:]:
            if type(value) is LazyBlock:
                materialize(m, value)
        return False
    at = w.base + w.pos
    kind = CLOSERS.get(op)
    below = m.metastack[-1] if m.metastack else None
    target = below[-1] if below else None
    if (
        kind is None
        or not isinstance(target, kind)
        or m.trace.opcodes >= m.max_opcodes
        or (m.frame_end >= 0 and at >= m.frame_end)
    ):
        materialize_frame(m, stack)
        return False
    total = sum(v.items if type(v) is LazyBlock else 1 for v in stack)
    if kind is DictV and total % 2:
        materialize_frame(m, stack)
        return False
    # Exactly what the reference SETITEMS/APPENDS/ADDITEMS does to a container that is
    # already past its cap: every item is counted, none kept.
    target.dropped += total
    for value in stack:
        if type(value) is LazyBlock:
            value.frame = None
    m.block_frames.pop(id(stack), None)
    m.stack = m.metastack.pop()
    w.pos += 1
    m.trace.opcodes += 1
    if m.trace.opcodes >= m.next_check:
        m.next_check = m.trace.opcodes + (1 << 16)
        m.deadline()
    return True
