"""How a pickle uses an imported global: the fact classification turns into severity."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mamori.scan.pickle.values import GlobalRef

__all__ = ["GlobalUse", "UseKind"]


class UseKind(enum.Enum):
    """What the loader does with a global. Ordered from least to most code run."""

    REFERENCED = "referenced"
    """Imported (module import runs) but never called by the pickle itself."""
    LOADS_LITERAL = "loads-literal"
    """A torch loader called on literal bytes, which are scanned as a file of their own."""
    RESOLVED = "resolved"
    """A conditional callable (``getattr``, ``type``, ``operator.getitem``) called with
    arguments that make it a name lookup; see ``allowlist.CONDITIONAL``."""
    ARGUMENT = "argument"
    """Passed as an argument to reviewed code, which may call its methods (iterate it)."""
    INSTANTIATED = "instantiated"
    """``cls.__new__(cls, ...)`` via NEWOBJ/NEWOBJ_EX or ``copyreg._reconstructor``."""
    BUILT = "built"
    """An object made from it received state (BUILD: ``__setstate__``) or items
    (APPENDS/SETITEMS on the object call its own methods)."""
    REACHABLE = "reachable"
    """May be called through an implicit call site: an argument of a callable that may call
    it, a method planted on an instance, an item given to an object's own methods."""
    MUTATED = "mutated"
    """BUILD applied state to the imported object itself (``setattr`` on a function/class)."""
    CALLED = "called"
    """Called with arguments: REDUCE, OBJ, INST, or the base of ``copyreg._reconstructor``."""


@dataclass(frozen=True, slots=True)
class GlobalUse:
    """One global, one way it is used, where first and how often."""

    ref: GlobalRef
    kind: UseKind
    offset: int
    count: int = 1
