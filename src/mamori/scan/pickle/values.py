"""Symbolic values: what the analyser's stack and memo hold instead of real objects.

Plain data (``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes`` and tuples of values) is
held as the Python value itself, because building it executes nothing. Everything whose
construction would run code at load time is a symbolic stand-in: :class:`GlobalRef` for an
imported name, :class:`Call` for the result of calling or instantiating something, and
:class:`Opaque` for a value the analyser cannot know (an unresolvable global, an extension
code, an out-of-band buffer). Mutable containers are small classes rather than frozen
dataclasses because the pickle program itself mutates them (APPENDS, SETITEMS, BUILD).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "MAX_KEPT_ITEMS",
    "MAX_LITERAL_NODES",
    "NOT_LITERAL",
    "BigData",
    "BufferV",
    "ByteArrayV",
    "Call",
    "CallKind",
    "Container",
    "DictV",
    "FrozenSetV",
    "GlobalRef",
    "LazyBlock",
    "ListV",
    "NotLiteral",
    "Opaque",
    "PersistentRef",
    "SetV",
    "Value",
    "to_literal",
]

MAX_KEPT_ITEMS: Final = 4096
"""Items kept per container. Beyond this a container only counts; memory stays bounded and the
pickle's ``literal`` becomes :data:`NOT_LITERAL` (every global was already recorded)."""


class NotLiteral(enum.Enum):
    """Type of the :data:`NOT_LITERAL` sentinel."""

    NOT_LITERAL = "not-literal"


NOT_LITERAL: Final = NotLiteral.NOT_LITERAL
"""The root of a pickle is not plain data (or was too large to keep)."""


@dataclass(frozen=True, slots=True)
class GlobalRef:
    """An imported name: what ``find_class(module, name)`` would return at load time."""

    module: str
    name: str

    @property
    def dotted(self) -> str:
        """``module.name`` as policies and allowlists spell it."""
        return f"{self.module}.{self.name}"


class CallKind(enum.Enum):
    """Which opcode produced a :class:`Call`."""

    REDUCE = "REDUCE"
    NEWOBJ = "NEWOBJ"
    NEWOBJ_EX = "NEWOBJ_EX"
    OBJ = "OBJ"
    INST = "INST"


@dataclass(frozen=True, slots=True, eq=False)
class Call:
    """The result of calling ``func`` (REDUCE, OBJ, INST) or instantiating it (NEWOBJ*).

    ``state`` collects the values BUILD applied to the result, in order; ``items`` what
    APPENDS/SETITEMS fed into it (which calls the object's own methods at load time).
    """

    func: Value
    args: Value
    kind: CallKind
    offset: int
    kwargs: Value = None
    state: list[Value] = field(default_factory=list)
    items: list[Value] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Opaque:
    """A value the analyser cannot know; ``reason`` says why (for evidence)."""

    reason: str


@dataclass(frozen=True, slots=True)
class BigData:
    """A string or bytes argument too large to keep in memory; only its size is known."""

    kind: str
    length: int
    offset: int


@dataclass(frozen=True, slots=True)
class PersistentRef:
    """What ``persistent_load(pid)`` returns: torch uses it for tensor storages."""

    pid: Value


@dataclass(frozen=True, slots=True)
class BufferV:
    """A protocol 5 out-of-band buffer (NEXT_BUFFER), possibly made read-only."""

    readonly: bool


@dataclass(frozen=True, slots=True)
class ByteArrayV:
    """A ``bytearray`` built by BYTEARRAY8."""

    data: bytes | BigData


class Container:
    """A mutable container that keeps at most :data:`MAX_KEPT_ITEMS` entries."""

    __slots__ = ("dropped", "items")

    def __init__(self) -> None:
        self.items: list[Value] = []
        self.dropped = 0

    def extend(self, values: list[Value]) -> None:
        """Add ``values``, counting instead of keeping those past the cap."""
        room = MAX_KEPT_ITEMS - len(self.items)
        if room >= len(values):
            self.items.extend(values)
        else:
            self.items.extend(values[: max(room, 0)])
            self.dropped += len(values) - max(room, 0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.items!r}, dropped={self.dropped})"


class ListV(Container):
    """A list. ``items`` are its elements."""

    __slots__ = ()


class DictV(Container):
    """A dict. ``items`` alternate key, value (keys may be unhashable symbolic values)."""

    __slots__ = ()

    def pairs(self) -> list[tuple[Value, Value]]:
        """The kept ``(key, value)`` pairs in insertion order."""
        it = iter(self.items)
        return list(zip(it, it, strict=False))


class SetV(Container):
    """A set built by EMPTY_SET/ADDITEMS."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class FrozenSetV:
    """A frozenset built by FROZENSET."""

    items: tuple[Value, ...]


class LazyBlock:
    """Stands for ``items`` plain-data values the fast path skipped (see ``lazy.py``).

    They come from the bytes ``[start, end)`` and were memoized into ``memo_count`` slots.
    """

    __slots__ = ("end", "frame", "gets", "items", "memo_count", "memo_start", "puts", "start")

    def __init__(
        self,
        start: int,
        end: int,
        items: int,
        memo_start: int,
        memo_count: int,
        *,
        puts: bool,
        frame: list[Value] | None,
        gets: dict[int, Value] | None = None,
    ) -> None:
        self.start = start
        self.end = end
        self.items = items
        self.memo_start = memo_start
        self.memo_count = memo_count
        self.puts = puts
        """True when the run memoized with BINPUT/LONG_BINPUT (absolute indices)."""
        self.frame = frame
        """The stack frame holding this block, until the block is closed or materialized."""
        self.gets = gets
        """Memo slots the run's units GET, with the plain values they held during the run."""

    def __repr__(self) -> str:
        return f"LazyBlock({self.start}..{self.end}, items={self.items})"


Value = (
    None
    | bool
    | int
    | float
    | str
    | bytes
    | tuple["Value", ...]
    | GlobalRef
    | Call
    | Opaque
    | BigData
    | PersistentRef
    | BufferV
    | ByteArrayV
    | ListV
    | DictV
    | SetV
    | FrozenSetV
    | LazyBlock
)
"""Anything the symbolic stack or memo can hold."""

_MAX_DEPTH: Final = 200
MAX_LITERAL_NODES: Final = 100_000


class _NotLiteralError(Exception):
    pass


def to_literal(value: Value, *, keep_refs: bool = False) -> object:
    """Return ``value`` as plain Python data, or :data:`NOT_LITERAL`.

    Plain data is None/bool/int/float/str/bytes and tuples, lists, dicts, sets and frozensets
    of plain data. Nothing is imported or called. Not literal: containers that dropped
    items, unhashable keys, nesting deeper than 200 levels, and more than
    :data:`MAX_LITERAL_NODES` values in all (memo references can share one container many
    times, so a small pickle can describe an exponentially large value).

    ``keep_refs`` keeps :class:`GlobalRef` values as they are (for persistent ids).
    """
    budget = [MAX_LITERAL_NODES]
    try:
        return _plain(value, 0, budget, keep_refs=keep_refs)
    except (_NotLiteralError, TypeError):
        return NOT_LITERAL


def _plain(value: Value, depth: int, budget: list[int], *, keep_refs: bool) -> object:  # noqa: PLR0911 - one branch per value type
    budget[0] -= 1
    if depth > _MAX_DEPTH or budget[0] < 0:
        raise _NotLiteralError
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    if keep_refs and isinstance(value, GlobalRef):
        return value

    # Direct recursion, no closure per node: persistent ids (one per tensor in a torch
    # pickle) all pass through here.
    d = depth + 1
    if isinstance(value, tuple):
        return tuple([_plain(v, d, budget, keep_refs=keep_refs) for v in value])
    if isinstance(value, Container) and value.dropped:
        raise _NotLiteralError
    if isinstance(value, ListV):
        return [_plain(v, d, budget, keep_refs=keep_refs) for v in value.items]
    if isinstance(value, DictV):
        return {
            _plain(k, d, budget, keep_refs=keep_refs): _plain(v, d, budget, keep_refs=keep_refs)
            for k, v in value.pairs()
        }
    if isinstance(value, SetV):
        return {_plain(v, d, budget, keep_refs=keep_refs) for v in value.items}
    if isinstance(value, FrozenSetV):
        return frozenset([_plain(v, d, budget, keep_refs=keep_refs) for v in value.items])
    raise _NotLiteralError
