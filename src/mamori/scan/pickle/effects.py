"""What the code-running opcodes do: imports, calls, instantiation, BUILD, persistent ids.

Split from the interpreter loop so that both the reference loop and the fast path share one
definition of every effect that matters for security.
"""

from __future__ import annotations

import re
from typing import IO, TYPE_CHECKING, Final, cast

from mamori.scan.pickle.trace import Event, Trace
from mamori.scan.pickle.uses import UseKind
from mamori.scan.pickle.values import (
    Call,
    CallKind,
    GlobalRef,
    Opaque,
    PersistentRef,
    Value,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from mamori.scan.pickle.reader import Window

__all__ = ["Effects", "short"]

_BUILTIN_TYPES: Final = frozenset(
    {
        "bool",
        "int",
        "float",
        "complex",
        "str",
        "bytes",
        "bytearray",
        "list",
        "tuple",
        "dict",
        "set",
        "frozenset",
        "slice",
        "range",
        "object",
        "type",
        "memoryview",
        "property",
        "staticmethod",
        "classmethod",
        "super",
        "enumerate",
        "zip",
        "map",
        "filter",
        "reversed",
    }
)
_SAFE_REPR: Final = re.compile(r"Ellipsis|NotImplemented|range\(-?\d+, -?\d+(, -?\d+)?\)")


class Effects:
    """Mixin holding the interpreter state the effects touch."""

    trace: Trace
    stack: list[Value]
    w: Window
    persistent_ids: bool
    is_loader: Callable[[GlobalRef], bool]
    on_build: Callable[[Value, Value, IO[bytes], int], None] | None

    def _global(self, module: str, name: str, at: int) -> GlobalRef:
        ref = GlobalRef(module, name)
        self.trace.use(ref, UseKind.REFERENCED, at)
        return ref

    def _persistent(self, pid: Value, at: int) -> None:
        tr = self.trace
        tr.pure = False
        tr.persistent_ids.append(pid)
        if not self.persistent_ids and len(tr.persistent_ids) == 1:
            tr.events.append(
                Event(
                    "MAM-PKL-015",
                    "persistent id in a plain pickle: the loader's persistent_load decides "
                    "what object it becomes",
                    at,
                    short(pid),
                )
            )
        self.stack.append(PersistentRef(pid))

    def _call(
        self, func: Value, args: Value, kind: CallKind, at: int, kwargs: Value = None
    ) -> Value:
        tr = self.trace
        if isinstance(func, GlobalRef) and _loads_torch_literal(func, args, kind, kwargs):
            # pickle.dumps(tensor) stores the tensor as a torch.save file in literal bytes;
            # those bytes are what torch.load will read, so they are scanned as a file of
            # their own instead of denying the call outright.
            tr.use(func, UseKind.LOADS_LITERAL, at)
            tr.embedded.append((cast("bytes", cast("tuple[Value, ...]", args)[0]), at))
            return Call(func, args, kind, at, kwargs)
        if isinstance(func, GlobalRef):
            use = (
                UseKind.INSTANTIATED
                if kind in (CallKind.NEWOBJ, CallKind.NEWOBJ_EX)
                else UseKind.CALLED
            )
            tr.use(func, use, at)
            self._special_call(func, args, at)
            if (
                func.dotted == "dill._dill._load_type"
                and isinstance(args, tuple)
                and len(args) == 1
                and isinstance(args[0], str)
            ):
                # dill names types by string: _load_type('complex') is builtins.complex,
                # _load_type('CodeType') is types.CodeType. Resolve it like an import.
                module = "builtins" if args[0] in _BUILTIN_TYPES else "types"
                return self._global(module, args[0], at)
        elif not isinstance(func, Opaque):
            tr.events.append(
                Event(
                    "MAM-PKL-008",
                    f"{kind.value} calls a value computed at load time, not an imported name",
                    at,
                    short(func),
                )
            )
        return Call(func, args, kind, at, kwargs)

    def _special_call(self, func: GlobalRef, args: Value, at: int) -> None:  # noqa: C901 - one branch per special callable
        """Callables that instantiate or unpickle one of their arguments."""
        tr = self.trace
        if not isinstance(args, tuple) or not args:
            return
        dotted = func.dotted
        if dotted in ("copyreg._reconstructor", "copy_reg._reconstructor"):
            # _reconstructor(cls, base, state): base.__new__(cls, state) and, unless it is
            # object's, base.__init__(obj, state). cls is instantiated, base is called.
            if isinstance(args[0], GlobalRef):
                tr.use(args[0], UseKind.INSTANTIATED, at)
            if len(args) > 1 and isinstance(args[1], GlobalRef):
                tr.use(args[1], UseKind.CALLED, at)
        elif dotted in ("copyreg.__newobj__", "copyreg.__newobj_ex__"):
            if isinstance(args[0], GlobalRef):
                tr.use(args[0], UseKind.INSTANTIATED, at)
        else:
            if self.is_loader(func):
                tr.nested.extend((a, at) for a in args if isinstance(a, bytes))
            if dotted == "dill._dill._eval_repr" and not (
                isinstance(args[0], str) and _SAFE_REPR.fullmatch(args[0])
            ):
                tr.events.append(
                    Event(
                        "MAM-PKL-001",
                        "dill._dill._eval_repr evaluates a string that is not a range or "
                        "singleton repr",
                        at,
                        short(args[0]),
                    )
                )
            # A callable passed to a callable may be called by it (torch's
            # _rebuild_from_type_v2, dill's _create_array, functools.reduce).
            for arg in args:
                if isinstance(arg, GlobalRef):
                    tr.use(arg, UseKind.CALLED, at)

    def _build(self, target: Value, state: Value, at: int) -> None:
        tr = self.trace
        if isinstance(target, Call):
            self._used_as_object(target, at)
            if len(target.state) < 64:  # noqa: PLR2004 - keep a few for hooks, bounded
                target.state.append(state)
        elif isinstance(target, GlobalRef):
            tr.use(target, UseKind.MUTATED, at)
        if self.on_build is not None:
            spliced = self.w.splice()
            self.on_build(target, state, cast("IO[bytes]", spliced), self.w.offset)
            self.w.resync(spliced)

    def _used_as_object(self, target: Call, at: int) -> None:
        func = target.func
        if isinstance(func, GlobalRef):
            self.trace.use(func, UseKind.BUILT, at)


_EVIDENCE: Final = 120
_INT_BITS: Final = 256
_DEPTH: Final = 2


def short(value: object, depth: int = 0) -> str:
    """A bounded description of a symbolic value for evidence.

    Never ``repr`` of the whole value: a hostile pickle can nest containers thousands deep
    or carry megabyte strings, and evidence must stay cheap and small.
    """
    if isinstance(value, str | bytes):
        text = repr(value[:_EVIDENCE])
    elif value is None or isinstance(value, bool | int | float):
        text = (
            repr(value) if not isinstance(value, int) or value.bit_length() < _INT_BITS else "<int>"
        )
    elif isinstance(value, GlobalRef):
        text = f"{value.module[:_EVIDENCE]}.{value.name[:_EVIDENCE]}"
    elif isinstance(value, tuple) and depth < _DEPTH:
        text = "(" + ", ".join(short(v, depth + 1) for v in value[:4]) + ")"
    elif isinstance(value, Call):
        text = f"<result of {short(value.func, depth + 1)}>"
    else:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _EVIDENCE else text[: _EVIDENCE - 3] + "..."


_TORCH_LITERAL_LOADERS: Final = frozenset({"torch.storage._load_from_bytes"})


def _loads_torch_literal(func: GlobalRef, args: Value, kind: CallKind, kwargs: Value) -> bool:
    return (
        func.dotted in _TORCH_LITERAL_LOADERS
        and kind is CallKind.REDUCE
        and kwargs is None
        and isinstance(args, tuple)
        and len(args) == 1
        and isinstance(args[0], bytes)
    )
