"""Runs one pickle through the interpreter: the fast path where it applies, else reference.

The driver is the one module that knows every part of the analyser; the parts are leaves
that never import it (or each other in a cycle):

* :mod:`.machine` — the reference interpreter, one opcode at a time;
* :mod:`.fast` — the hot loop over data opcodes (compiled by Cython when a compiler was
  present at install time; :mod:`.hot` picks it and ``SCANNER_BUILD`` says which runs);
* :mod:`.template` and :mod:`.lazy` — template runs over capped batches, and their lazy
  blocks, materialized when something needs their values;
* :mod:`.memo` — the compact memo store that keeps memory bounded.

It also enforces the memory budgets of :class:`~mamori.scan.limits.ScanLimits`: memo entries
(exactly, at each insertion, in the machine and the hot loop alike), stack values and
process growth (every 65,536 opcodes and every MiB read). Reaching one stops the pickle with
a ``MAM-LIM-*`` event, never an out-of-memory kill.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Callable
from typing import IO, Final

from mamori.scan.pickle.hot import SCANNER_BUILD, fast_loop
from mamori.scan.pickle.lazy import materialize_slot, prepare_step
from mamori.scan.pickle.machine import Machine
from mamori.scan.pickle.memo import ColdMemo, compact, shed
from mamori.scan.pickle.reader import Window
from mamori.scan.pickle.template import attempt
from mamori.scan.pickle.trace import Malformed, Trace
from mamori.scan.pickle.values import DictV, GlobalRef, ListV, SetV, Value

__all__ = ["SCANNER_BUILD", "fast_loop", "interpret"]

_CHUNK: Final = 256
"""Opcodes between template attempts (a few Python calls per attempt)."""
_CONTAINERS: Final = (ListV, DictV, SetV)
_UNLIMITED: Final = 1 << 62


def interpret(
    window: Window,
    *,
    max_opcodes: int,
    deadline: Callable[[], None],
    is_loader: Callable[[GlobalRef], bool],
    on_build: Callable[[Value, Value, IO[bytes], int], None] | None = None,
    persistent_ids: bool = False,
    fast: bool = True,
    max_memo: int = _UNLIMITED,
    max_stack: int = _UNLIMITED,
    max_memory: int = _UNLIMITED,
) -> Trace:
    """Interpret one pickle from ``window``'s position; return what it did.

    ``fast=False`` runs the reference interpreter alone (the differential tests compare).
    """
    budget = _Budget(max_stack=max_stack, max_memory=max_memory, deadline=deadline)
    machine = Machine(
        window,
        max_opcodes=max_opcodes,
        deadline=budget.check,
        is_loader=is_loader,
        on_build=on_build,
        persistent_ids=persistent_ids,
        fast=fast_path if fast else None,
        max_memo=max_memo,
    )
    budget.machine = machine
    machine.on_missing_slot = budget.missing_slot
    window.on_refill = budget.check_memory
    try:
        return machine.run()
    finally:
        window.on_refill = None


class _Budget:
    """The periodic checks: deadline, stack size, process growth, memo compaction."""

    def __init__(self, *, max_stack: int, max_memory: int, deadline: Callable[[], None]) -> None:
        self.max_stack = max_stack
        self.max_memory = max_memory
        self.deadline = deadline
        self.machine: Machine | None = None
        self.cold = ColdMemo()
        self.start_rss = _rss()
        self.shed_at = max_memory // 2

    def check(self) -> None:
        m = self.machine
        self.deadline()
        if m is None:
            return
        if len(m.memo) >= self.cold.next_compaction:
            compact(m, self.cold)
        held = len(m.stack) + len(m.metastack) + sum(map(len, m.metastack))
        if held > self.max_stack:
            msg = f"more than {self.max_stack} values on the pickle stack"
            raise Malformed("MAM-LIM-008", msg, m.w.offset)
        self.check_memory()

    def check_memory(self) -> None:
        m = self.machine
        if m is None:
            return
        grown = _rss() - self.start_rss
        if grown > self.shed_at:
            # Half the budget used: let go of plain data first (a container past its keep cap
            # does the same), and only fail if the growth continues regardless.
            shed(m)
            self.shed_at = grown + self.max_memory // 8
        if grown > self.max_memory:
            msg = f"analysing this pickle grew memory by more than {self.max_memory} bytes"
            raise Malformed("MAM-LIM-009", msg, m.w.offset)

    def missing_slot(self, m: Machine, idx: int) -> bool:
        found, value = self.cold.take(idx)
        if found:
            m.memo[idx] = value
            m.memo_extra -= 1
            return True
        return bool(m.segments) and materialize_slot(m, idx)


def _rss() -> int:
    """Resident set size of this process in bytes (peak where the current one is unknown)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


_PAGE: Final = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def fast_path(m: Machine) -> None:
    """Advance as far as the fast path can; the reference path then runs the next opcode."""
    templates = m.w.origin is not None  # lazy runs must be re-readable: seekable streams only
    while True:
        if templates and attempt(m):
            continue
        if templates:
            if fast_loop(m, chunk=_CHUNK, realign=_inside_capped(m)):
                continue
        elif fast_loop(m):
            continue
        if m.block_frames and prepare_step(m):
            continue
        return


def _inside_capped(m: Machine) -> bool:
    """True when an enclosing frame (not the current one) fills a container past its cap."""
    meta = m.metastack
    # Indexing, not slicing: this runs between every two reference steps, and each
    # container allocated counts towards the cyclic GC's next collection.
    for i in range(2, min(len(meta), 4) + 1):
        frame = meta[-i]
        top = frame[-1] if frame else None
        if type(top) in _CONTAINERS and top.dropped:  # type: ignore[union-attr]  # type checked
            return True
    return False
