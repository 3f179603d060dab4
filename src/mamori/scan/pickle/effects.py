"""What the code-running opcodes do: imports, calls, instantiation, BUILD, persistent ids.

Split from the interpreter loop so that both the reference loop and the fast path share one
definition of every effect that matters for security.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Final, cast

from mamori.scan.pickle.allowlist import (
    CALLS,
    CONDITIONAL,
    GIVES_STATE,
    INSTANTIATES,
    TYPING_FORMS,
    WRAPS,
    is_allowlisted,
)
from mamori.scan.pickle.names import canonical
from mamori.scan.pickle.trace import Event, Trace
from mamori.scan.pickle.uses import UseKind
from mamori.scan.pickle.values import (
    BufferV,
    Call,
    CallKind,
    DictV,
    FrozenSetV,
    GlobalRef,
    ListV,
    Opaque,
    PersistentRef,
    SetV,
    Value,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from mamori.scan.pickle.reader import Window

__all__ = ["PLANTABLE", "Effects", "short"]

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
        module, name = canonical(module, name, self.trace.protocol)
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

    # --- call sites of the model (MODEL.md) ----------------------------------------------

    def _call(
        self, func: Value, args: Value, kind: CallKind, at: int, kwargs: Value = None
    ) -> Value:
        """REDUCE, NEWOBJ, NEWOBJ_EX, OBJ and INST: the loader calls or instantiates ``func``."""
        tr = self.trace
        if isinstance(func, GlobalRef):
            if _loads_torch_literal(func, args, kind, kwargs):
                # pickle.dumps(tensor) stores the tensor as a torch.save file in literal
                # bytes; those bytes are what torch.load will read, so they are scanned as a
                # file of their own instead of denying the call outright.
                tr.use(func, UseKind.LOADS_LITERAL, at)
                tr.embedded.append((cast("bytes", cast("tuple[Value, ...]", args)[0]), at))
                return Call(func, args, kind, at, kwargs)
            role = _role(func)
            if role.conditional and kind is CallKind.REDUCE and isinstance(args, tuple):
                resolved = self._conditional(func, args, at)
                if resolved is not None:
                    return resolved
            # NEWOBJ runs only cls.__new__, but with the file's arguments: class code that
            # receives data is a call (sympy's Tuple.__new__ sympifies, i.e. evals, strings).
            newobj = kind in (CallKind.NEWOBJ, CallKind.NEWOBJ_EX) and _no_arguments(args, kwargs)
            tr.use(func, UseKind.INSTANTIATED if newobj else UseKind.CALLED, at)
            self._follow(func, args, kwargs, at, 0)
            if (
                role.special
                and func.dotted == "dill._dill._load_type"
                and isinstance(args, tuple)
                and len(args) == 1
                and isinstance(args[0], str)
            ):
                # dill names types by string: _load_type('complex') is builtins.complex,
                # _load_type('CodeType') is types.CodeType. Resolve it like an import.
                module = "builtins" if args[0] in _BUILTIN_TYPES else "types"
                return self._global(module, args[0], at)
        else:
            wrapped = _wrapped(func)
            if wrapped is not None:
                # Calling a functools.partial calls what it wraps.
                self._invoke(wrapped, None, at, 1)
            elif not isinstance(func, Opaque):
                tr.events.append(
                    Event(
                        "MAM-PKL-008",
                        f"{kind.value} calls a value computed at load time, not an imported name",
                        at,
                        short(func),
                    )
                )
            self._reach_all(args, at, _DEEP)
            self._reach_all(kwargs, at, _DEEP)
        return Call(func, args, kind, at, kwargs)

    def _conditional(self, func: GlobalRef, args: tuple[Value, ...], at: int) -> Value | None:
        """Calls that are name lookups with these arguments (``allowlist.CONDITIONAL``)."""
        dotted = func.dotted
        if dotted not in CONDITIONAL:
            return None
        tr = self.trace
        if dotted == "builtins.getattr":
            if (
                len(args) == 2  # noqa: PLR2004 - getattr(obj, name)
                and isinstance(args[0], GlobalRef)
                and isinstance(args[1], str)
                and args[1].isidentifier()
            ):
                # The same object find_class returns for the dotted name (protocol 4 walks
                # attributes exactly so); classified like one.
                tr.use(func, UseKind.RESOLVED, at)
                base = args[0]
                ref = GlobalRef(base.module, f"{base.name}.{args[1]}")
                tr.use(ref, UseKind.REFERENCED, at)
                return ref
        elif dotted == "builtins.type":
            if len(args) == 1:
                tr.use(func, UseKind.RESOLVED, at)
                return _type_of(args[0]) or Call(func, args, CallKind.REDUCE, at)
        elif len(args) == 2 and _is_typing(args[0], 0):  # noqa: PLR2004 - getitem(obj, key)
            # typing.List[int]: subscription records its parameters; nothing is called.
            tr.use(func, UseKind.RESOLVED, at)
            return Call(func, args, CallKind.REDUCE, at)
        return None

    def _follow(  # noqa: C901, PLR0912 - one branch per role a helper gives its arguments
        self, func: GlobalRef, args: Value, kwargs: Value, at: int, depth: int
    ) -> None:
        """What ``func`` does with its arguments, as far as the model knows."""
        tr = self.trace
        role = _role(func)
        positional = args if isinstance(args, tuple) else ()
        if role.allowlisted and not role.special and kwargs is None:
            # The common case (one per tensor in a torch pickle): reviewed code given data.
            for arg in positional:
                if type(arg) not in _LEAVES:
                    self._pass(arg, at, _SHALLOW)
            if not isinstance(args, tuple):
                self._pass(args, at, _SHALLOW)
            return
        dotted = role.dotted
        if any(isinstance(a, bytes) for a in positional) and self.is_loader(func):
            tr.nested.extend((a, at) for a in positional if isinstance(a, bytes))
        if dotted == "dill._dill._eval_repr" and not (
            positional and isinstance(positional[0], str) and _SAFE_REPR.fullmatch(positional[0])
        ):
            tr.events.append(
                Event(
                    "MAM-PKL-001",
                    "dill._dill._eval_repr evaluates a string that is not a range or "
                    "singleton repr",
                    at,
                    short(positional[0] if positional else args),
                )
            )
        if not role.allowlisted:
            # Unknown code may call anything it is given, at any depth.
            self._reach_all(args, at, _DEEP)
            self._reach_all(kwargs, at, _DEEP)
            return
        if not isinstance(args, tuple):
            # C rejects it; pickle._Unpickler (joblib) iterates it for *args.
            self._pass(args, at, _SHALLOW)
        handled: set[int] = set()
        for spec in CALLS.get(dotted, ()):
            if spec.func < len(positional):
                handled.add(spec.func)
                callargs: Value = None
                if isinstance(spec.args, int) and spec.args < len(positional):
                    handled.add(spec.args)
                    callargs = positional[spec.args]
                elif isinstance(spec.args, tuple):
                    handled.update(spec.args)
                    callargs = tuple(positional[i] for i in spec.args if i < len(positional))
                self._invoke(positional[spec.func], callargs, at, depth + 1)
        for i in INSTANTIATES.get(dotted, ()):
            if i < len(positional):
                handled.add(i)
                self._instantiate(
                    positional[i], at, with_args=_new_gets_arguments(dotted, positional)
                )
        for i in GIVES_STATE.get(dotted, ()):
            if i < len(positional):
                self._plants(positional[i], at)
        for i, arg in enumerate(positional):
            if i not in handled:
                self._pass(arg, at, _SHALLOW)
        self._pass(kwargs, at, _SHALLOW)

    def _invoke(self, callee: Value, callargs: Value, at: int, depth: int) -> None:
        """A helper calls ``callee(*callargs)`` at load time: graded as a REDUCE would be."""
        tr = self.trace
        if isinstance(callee, GlobalRef):
            tr.use(callee, UseKind.CALLED, at)
            if depth <= _DEEP:
                self._follow(callee, callargs, None, at, depth)
            return
        wrapped = _wrapped(callee)
        if wrapped is not None:
            if depth <= _DEEP:
                self._invoke(wrapped, None, at, depth + 1)
        elif _may_be_callable(callee) and not _made_by_reviewed_code(callee):
            tr.events.append(
                Event(
                    "MAM-PKL-008",
                    "a helper calls a value computed at load time, not an imported name",
                    at,
                    short(callee),
                )
            )
        self._reach_all(callargs, at, _DEEP)

    def _instantiate(self, cls: Value, at: int, *, with_args: bool = False) -> None:
        if isinstance(cls, GlobalRef):
            # cls.__new__ given the file's arguments is a call of class code with data.
            self.trace.use(cls, UseKind.CALLED if with_args else UseKind.INSTANTIATED, at)
        elif _may_be_callable(cls) and not isinstance(cls, Opaque):
            self.trace.events.append(
                Event(
                    "MAM-PKL-008",
                    "a helper instantiates a class computed at load time",
                    at,
                    short(cls),
                )
            )

    def _reach_all(self, value: Value, at: int, depth: int) -> None:
        """Every imported name inside ``value`` may be called by code that receives it."""
        for ref in _refs(value, depth):
            self.trace.use(ref, UseKind.REACHABLE, at)

    def _pass(self, value: Value, at: int, depth: int) -> None:
        """Reviewed code receives ``value``: it calls none of it, but may iterate or hash it."""
        for ref in _refs(value, depth):
            self.trace.use(ref, UseKind.ARGUMENT, at)

    def _plants(self, state: Value, at: int) -> None:
        """State that sets attributes: a callable under a name something looks up and calls.

        BUILD without ``__setstate__`` copies a dict state into ``inst.__dict__`` and
        ``setattr``s a slot state; most classes' own ``__setstate__`` do the same. An instance
        attribute shadows a method of the class, so ``__setstate__`` planted by one BUILD is
        what the next BUILD on that object calls, with any argument.
        """
        tr = self.trace
        for dct in _state_dicts(state):
            if dct.dropped:
                tr.events.append(
                    Event(
                        "MAM-PKL-020",
                        "state dict too large to check for planted methods",
                        at,
                        f"{len(dct.items) // 2 + dct.dropped // 2} entries",
                    )
                )
            for key, value in dct.pairs():
                if isinstance(key, str):
                    if key not in PLANTABLE:
                        continue
                elif not _may_be_callable(key):
                    continue  # plain data never equals an attribute name; objects may
                if not _may_be_callable(value):
                    continue
                what = key if isinstance(key, str) else "a computed key"
                tr.events.append(
                    Event(
                        "MAM-PKL-020",
                        f"state sets {what} on an object to a callable: the unpickler or a "
                        "helper looks that name up on the instance and calls it",
                        at,
                        short(value),
                    )
                )
                if isinstance(value, GlobalRef):
                    tr.use(value, UseKind.REACHABLE, at)

    def _build(self, target: Value, state: Value, at: int) -> None:
        """BUILD: ``target.__setstate__(state)``, looked up on the instance.

        Without one, a dict state is copied into ``target.__dict__`` and a slot state is
        ``setattr``-ed.
        """
        tr = self.trace
        if isinstance(target, Call):
            self._used_as_object(target, at)
            if isinstance(target.func, GlobalRef) and _sets_slots(state):
                # setattr runs the class's property setters and __setattr__ with the file's
                # values: class code given data is a call (sympy's Beam.length setter evals).
                tr.use(target.func, UseKind.CALLED, at)
            if len(target.state) < 64:  # noqa: PLR2004 - keep a few for hooks, bounded
                target.state.append(state)
        elif isinstance(target, GlobalRef):
            tr.use(target, UseKind.MUTATED, at)
        elif isinstance(target, PersistentRef | Opaque | BufferV):
            self._unproven(target, "BUILD", at)
        self._plants(state, at)
        if self.on_build is not None:
            spliced = self.w.splice()
            self.on_build(target, state, cast("IO[bytes]", spliced), self.w.offset)
            self.w.resync(spliced)

    def _items(self, target: Value, items: list[Value], opname: str, at: int) -> bool:
        """APPENDS/APPEND/SETITEMS/SETITEM/ADDITEMS on a target that is no list, dict or set.

        The loader calls ``extend``/``append``/``add`` looked up on the object (or its
        class's ``__setitem__``). False when the target cannot take items at all.
        """
        tr = self.trace
        reviewed = False
        if isinstance(target, Call):
            self._used_as_object(target, at)
            reviewed = _made_by_reviewed_code(target)
            if not reviewed and isinstance(target.func, GlobalRef):
                # The object's own class code (its __setitem__/extend/append/add) runs with the
                # file's items: a call of the unreviewed class (sympy's MutableDenseMatrix
                # sympifies, i.e. evals, a string item). Exact allowlist entries keep reviewed
                # dict-like classes quiet.
                tr.use(target.func, UseKind.CALLED, at)
            if len(target.items) < 64:  # noqa: PLR2004 - bounded
                target.items.extend(items[:64])
        elif isinstance(target, GlobalRef):
            tr.use(target, UseKind.MUTATED, at)
        elif isinstance(target, PersistentRef | Opaque | BufferV):
            self._unproven(target, opname, at)
        else:
            return False
        for item in items:
            if type(item) in _LEAVES:
                continue
            if reviewed:
                self._pass(item, at, _SHALLOW)  # the reviewed class's own method takes data
            else:
                self._reach_all(item, at, _SHALLOW)
        return True

    def _unproven(self, target: Value, opname: str, at: int) -> None:
        self.trace.events.append(
            Event(
                "MAM-PKL-021",
                f"{opname} calls a method of an object the analyser cannot prove is data "
                "(a persistent object, an out-of-band buffer or an unresolvable value)",
                at,
                short(target),
            )
        )

    def _used_as_object(self, target: Call, at: int) -> None:
        func = target.func
        if isinstance(func, GlobalRef):
            self.trace.use(func, UseKind.BUILT, at)


PLANTABLE: Final = frozenset(
    {
        "__setstate__",  # BUILD, torch/dill rebuild helpers
        "extend",  # APPENDS on a non-list
        "append",  # APPEND, and APPENDS when there is no extend
        "add",  # ADDITEMS on a non-set
        "keys",  # dict(obj), OrderedDict(obj) and update(obj) call obj.keys()
        "as_subclass",  # torch._tensor._rebuild_from_type_v2 calls ret.as_subclass
        "__class__",  # slot state setattr swaps the class whose methods run next
        "__new__",  # pickle._Unpickler (joblib) NEWOBJ: cls.__new__ looked up on the object
        "items",  # pickle._Unpickler (joblib) BUILD: state.items() on the state object
    }
)
"""Attribute names the unpickler or an allowlisted helper looks up on an instance and calls."""

_LEAVES: Final = frozenset({type(None), bool, int, float, str, bytes})
_DEEP: Final = 4
_SHALLOW: Final = 2
_MAX_REFS: Final = 256


@dataclass(frozen=True, slots=True)
class _Role:
    """What the model knows about a callable global, looked up once per name."""

    dotted: str
    allowlisted: bool
    conditional: bool
    special: bool
    """It calls, instantiates or gives state to an argument, or its arguments are checked."""


_SPECIAL: Final = frozenset(
    {*CALLS, *INSTANTIATES, *GIVES_STATE, "dill._dill._load_type", "dill._dill._eval_repr"}
)
_ROLE_NAME: Final = 256


def _role(func: GlobalRef) -> _Role:
    if len(func.module) + len(func.name) > _ROLE_NAME:
        return _compute_role(func)  # hostile names are not worth a cache slot
    return _cached_role(func)


def _compute_role(func: GlobalRef) -> _Role:
    dotted = func.dotted
    return _Role(
        dotted=dotted,
        allowlisted=is_allowlisted(dotted),
        conditional=dotted in CONDITIONAL,
        special=dotted in _SPECIAL,
    )


_cached_role: Final = functools.lru_cache(maxsize=1024)(_compute_role)


def _no_arguments(args: Value, kwargs: Value) -> bool:
    """True when a ``cls.__new__(cls, *args, **kwargs)`` receives nothing from the file."""
    no_args = args == ()
    no_kwargs = kwargs is None or (
        isinstance(kwargs, DictV) and not kwargs.items and not kwargs.dropped
    )
    return no_args and no_kwargs


def _new_gets_arguments(helper: str, positional: tuple[Value, ...]) -> bool:
    """Whether an instantiating helper passes file data on to ``cls.__new__``."""
    rest = positional[1:]
    if helper == "copyreg.__newobj__":  # cls.__new__(cls, *args)
        return bool(rest)
    if helper == "copyreg.__newobj_ex__":  # cls.__new__(cls, *args, **kwargs)
        return not _no_arguments(rest[0] if rest else (), rest[1] if len(rest) > 1 else None)
    if helper in _NEW_FROM_DICT:  # cls.__new__(cls, **d)
        return not _no_arguments((), rest[0] if rest else None)
    return False


_NEW_FROM_DICT: Final = frozenset(
    {
        "pandas.core.indexes.base._new_Index",
        "pandas.core.indexes.datetimes._new_DatetimeIndex",
        "pandas.core.indexes.interval._new_IntervalIndex",
        "pandas.core.indexes.timedeltas._new_TimedeltaIndex",
        "pandas.core.indexes.period._new_PeriodIndex",
    }
)
"""Helpers that instantiate ``cls`` as ``cls.__new__(cls, **d)`` (MODEL.md, INSTANTIATES)."""


def _may_be_callable(value: Value) -> bool:
    return isinstance(value, GlobalRef | Call | PersistentRef | Opaque)


def _refs(value: Value, depth: int) -> list[GlobalRef]:
    """Imported names inside ``value`` (containers followed ``depth`` levels, bounded)."""
    if type(value) in _LEAVES:
        return []
    found: list[GlobalRef] = []
    todo: list[tuple[Value, int]] = [(value, 0)]
    budget = _MAX_REFS
    while todo and budget > 0:
        item, level = todo.pop()
        budget -= 1
        if isinstance(item, GlobalRef):
            found.append(item)
        elif level < depth:
            if isinstance(item, tuple):
                todo.extend((v, level + 1) for v in item[:_MAX_REFS])
            elif isinstance(item, ListV | DictV | SetV | FrozenSetV):
                todo.extend((v, level + 1) for v in item.items[:_MAX_REFS])
    return found


def _made_by_reviewed_code(value: Value) -> bool:
    """An object an allowlisted class or helper built: calling it runs reviewed code."""
    if isinstance(value, Opaque):
        return True  # reported where it was made
    if not isinstance(value, Call) or not isinstance(value.func, GlobalRef):
        return False
    role = _role(value.func)
    return role.allowlisted and not role.conditional


def _sets_slots(state: Value) -> bool:
    """Whether a BUILD state is ``(dict, slots)`` with slots to ``setattr``."""
    if not isinstance(state, tuple) or len(state) != 2:  # noqa: PLR2004 - (dict, slots)
        return False
    slots = state[1]
    return slots is not None and not (
        isinstance(slots, DictV) and not slots.items and not slots.dropped
    )


def _state_dicts(state: Value) -> list[DictV]:
    if isinstance(state, DictV):
        return [state]
    if isinstance(state, tuple):
        return [s for s in state[:2] if isinstance(s, DictV)]
    return []


def _wrapped(value: Value) -> Value | None:
    """What calling ``value`` calls, when it is a partial of something."""
    if not isinstance(value, Call) or not isinstance(value.func, GlobalRef):
        return None
    position = WRAPS.get(value.func.dotted)
    if position is None:
        return None
    # partial.__setstate__((func, args, kwds, dict)) replaces the wrapped callable.
    for state in reversed(value.state):
        if isinstance(state, tuple) and state:
            return state[0]
    args = value.args
    if isinstance(args, tuple) and position < len(args):
        return args[position]
    return Opaque("partial without a callable")


def _is_typing(value: Value, depth: int) -> bool:
    if isinstance(value, GlobalRef):
        return value.dotted in TYPING_FORMS
    return (
        depth < _DEEP
        and isinstance(value, Call)
        and isinstance(value.func, GlobalRef)
        and value.func.dotted == "_operator.getitem"
        and isinstance(value.args, tuple)
        and bool(value.args)
        and _is_typing(value.args[0], depth + 1)
    )


_TYPE_OF: Final = {
    type(None): GlobalRef("builtins", "NoneType"),
    bool: GlobalRef("builtins", "bool"),
    int: GlobalRef("builtins", "int"),
    float: GlobalRef("builtins", "float"),
    str: GlobalRef("builtins", "str"),
    bytes: GlobalRef("builtins", "bytes"),
    tuple: GlobalRef("builtins", "tuple"),
    ListV: GlobalRef("builtins", "list"),
    DictV: GlobalRef("builtins", "dict"),
    SetV: GlobalRef("builtins", "set"),
    FrozenSetV: GlobalRef("builtins", "frozenset"),
}


def _type_of(value: Value) -> GlobalRef | None:
    """``type(value)`` for plain data; None when the analyser does not know the class."""
    return _TYPE_OF.get(type(value))


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
