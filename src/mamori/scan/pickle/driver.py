"""Runs one pickle through the interpreter: the fast path where it applies, else reference."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

from mamori.scan.pickle.fast import fast_path
from mamori.scan.pickle.machine import Machine
from mamori.scan.pickle.reader import Window
from mamori.scan.pickle.trace import Trace
from mamori.scan.pickle.values import GlobalRef, Value

__all__ = ["interpret"]


def interpret(
    window: Window,
    *,
    max_opcodes: int,
    deadline: Callable[[], None],
    is_loader: Callable[[GlobalRef], bool],
    on_build: Callable[[Value, Value, IO[bytes], int], None] | None = None,
    persistent_ids: bool = False,
    fast: bool = True,
) -> Trace:
    """Interpret one pickle from ``window``'s position; return what it did.

    ``fast=False`` runs the reference interpreter alone (the differential tests compare).
    """
    machine = Machine(
        window,
        max_opcodes=max_opcodes,
        deadline=deadline,
        is_loader=is_loader,
        on_build=on_build,
        persistent_ids=persistent_ids,
        fast=fast_path if fast else None,
    )
    return machine.run()
