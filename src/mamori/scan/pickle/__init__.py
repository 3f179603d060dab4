"""The one pickle analyser. Nothing is ever unpickled.

A streaming opcode reader, a symbolic stack and memo, and global resolution against an
allowlist and a denylist. ``MODEL.md`` beside this file is the model of the unpickler the
analyser implements: for each opcode, which Python-level calls CPython's ``_pickle`` (and the
pure-Python ``pickle._Unpickler`` that joblib uses) can make and on what, and how each call site
is graded. The analyser tracks every value that may be a non-builtin instance and grades every
call site listed there; "imported but not called" is LOW only when no opcode path can reach the
global as a callable.

Other format handlers (torch, joblib, numpy) feed it streams through :func:`analyse_one`
(exactly one pickle, stream left right after STOP) or :func:`analyse_stream` (every stacked
pickle to EOF). Findings are emitted through the :class:`ScanContext`; the
:class:`PickleResult` gives callers what they need to go on parsing (the literal root value,
the persistent ids, the globals and how they were used).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Final, Protocol

from mamori.scan._internal.source import BytesSource
from mamori.scan.pickle.classify import classify, is_loader
from mamori.scan.pickle.driver import interpret
from mamori.scan.pickle.opcodes import by_code
from mamori.scan.pickle.reader import Window
from mamori.scan.pickle.uses import GlobalUse, UseKind
from mamori.scan.pickle.values import (
    NOT_LITERAL,
    BigData,
    BufferV,
    ByteArrayV,
    Call,
    CallKind,
    DictV,
    FrozenSetV,
    GlobalRef,
    ListV,
    NotLiteral,
    Opaque,
    PersistentRef,
    SetV,
    Value,
    to_literal,
)

if TYPE_CHECKING:
    from mamori.scan._internal.context import ScanContext
    from mamori.scan.pickle.trace import Trace

__all__ = [
    "NOT_LITERAL",
    "BigData",
    "BufferV",
    "ByteArrayV",
    "Call",
    "CallKind",
    "DictV",
    "FrozenSetV",
    "GlobalRef",
    "GlobalUse",
    "ListV",
    "NotLiteral",
    "Opaque",
    "PersistentRef",
    "PickleHooks",
    "PickleResult",
    "SetV",
    "UseKind",
    "Value",
    "analyse_one",
    "analyse_stream",
    "looks_like_pickle_start",
]

_MAX_NESTING: Final = 4
"""Pickles inside pickle.loads arguments are analysed this many levels deep."""

# Bytes a pickle can start with: PROTO, or an opcode a protocol 0/1 pickler emits first.
_STARTS: Final = frozenset(b"\x80(]})cNIJKMLFSTUVXGBCPg.it0")


@dataclass(frozen=True, slots=True)
class PickleResult:
    """What one pickle was, for callers that go on parsing after it."""

    end: int
    """Absolute offset (``offset_base``-relative) just after STOP, or where parsing broke."""
    complete: bool
    """Reached STOP without malformation."""
    literal: object
    """The root value as plain Python data when the pickle contains only data opcodes,
    else :data:`NOT_LITERAL`. Built symbolically, never by unpickling."""
    globals: tuple[GlobalUse, ...]
    """Every resolved global and how it was used."""
    persistent_ids: tuple[object, ...]
    """Persistent ids as plain data where possible; globals inside stay :class:`GlobalRef`
    (torch: ``('storage', GlobalRef('torch', 'FloatStorage'), '0', 'cpu', 4)``)."""
    protocol: int = 0
    """The protocol named by PROTO (0 when absent)."""
    opcodes: int = 0
    """How many opcodes were read."""


class PickleHooks(Protocol):
    """Callbacks for formats that interleave raw data with pickle opcodes (joblib)."""

    def on_build(self, target: Value, state: Value, stream: IO[bytes], offset: int) -> None:
        """Called right after a BUILD opcode is processed.

        joblib uses it: after BUILD of a ``joblib.numpy_pickle.NumpyArrayWrapper`` the raw
        array bytes follow inline in the stream and the hook consumes them (reading from
        ``stream``) before parsing resumes. ``offset`` is the absolute offset of the first
        byte after BUILD; ``stream`` supports ``read`` and ``tell`` only.
        """


def analyse_one(
    stream: IO[bytes],
    ctx: ScanContext,
    *,
    offset_base: int = 0,
    hooks: PickleHooks | None = None,
    persistent_ids: bool = False,
) -> PickleResult:
    """Analyse exactly one pickle from the current position and emit its findings.

    Leaves ``stream`` positioned right after STOP (so a caller can read what follows: legacy
    torch storages, joblib arrays). Seekable streams are read in large chunks and rewound;
    other streams are read byte-exactly (slower). ``persistent_ids=True`` means PERSID and
    BINPERSID are expected (torch); otherwise they are a finding.
    """
    seekable = _seekable(stream)
    window = Window(stream, offset_base, exact=not seekable)
    result = _analyse(window, ctx, hooks=hooks, persistent_ids=persistent_ids, depth=0)
    leftover = window.unread()
    if leftover and seekable:
        stream.seek(-leftover, io.SEEK_CUR)
    return result


def analyse_stream(stream: IO[bytes], ctx: ScanContext, *, offset_base: int = 0) -> None:
    """Analyse all stacked pickles from the stream's current position to EOF.

    Trailing bytes that are not a pickle are a finding; a second well-formed pickle is
    analysed like the first and reported as stacked.
    """
    window = Window(stream, offset_base, exact=False)
    _analyse_all(window, ctx, depth=0)


def looks_like_pickle_start(data: bytes) -> bool:
    """True when ``data`` could begin a pickle (for sniffing and trailing-data checks)."""
    if not data:
        return False
    if data[0] == 0x80:  # noqa: PLR2004 - PROTO
        return len(data) < 3 or by_code(data[2]) is not None  # noqa: PLR2004
    return data[0] in _STARTS


def _analyse_all(window: Window, ctx: ScanContext, *, depth: int) -> None:
    count = 0
    while True:
        if window.at_eof():
            if count == 0:
                ctx.report("MAM-PKL-010", "empty pickle stream", offset=window.offset)
            return
        head = window.buf[window.pos : window.pos + 3]
        if count and not looks_like_pickle_start(head):
            ctx.report(
                "MAM-PKL-013",
                "bytes after STOP are not a pickle",
                offset=window.offset,
                evidence=head.hex(),
            )
            return
        start = window.offset
        result = _analyse(window, ctx, hooks=None, persistent_ids=False, depth=depth)
        count += 1
        if count == 2:  # noqa: PLR2004 - report stacking once, at the second pickle
            ctx.report("MAM-PKL-014", "more than one pickle in the stream", offset=start)
        if not result.complete:
            if count > 1:
                ctx.report(
                    "MAM-PKL-013",
                    "bytes after STOP do not form a complete pickle",
                    offset=start,
                )
            return


def _analyse(
    window: Window,
    ctx: ScanContext,
    *,
    hooks: PickleHooks | None,
    persistent_ids: bool,
    depth: int,
) -> PickleResult:
    trace = interpret(
        window,
        max_opcodes=ctx.limits.max_pickle_opcodes,
        deadline=ctx.check_deadline,
        is_loader=is_loader,
        on_build=hooks.on_build if hooks is not None else None,
        persistent_ids=persistent_ids,
        max_memo=ctx.limits.max_pickle_memo,
        max_stack=ctx.limits.max_pickle_stack,
        max_memory=ctx.limits.max_pickle_memory,
    )
    _emit(trace, ctx)
    for payload, offset in trace.nested:
        if depth >= _MAX_NESTING or not looks_like_pickle_start(payload[:3]):
            continue
        ctx.report(
            "MAM-PKL-018",
            "bytes passed to a deserialiser are analysed as a nested pickle",
            offset=offset,
            evidence=f"{len(payload)} bytes",
        )
        _analyse_all(Window(io.BytesIO(payload), offset, exact=False), ctx, depth=depth + 1)
    for payload, offset in trace.embedded:
        ctx.scan_child(f"<torch.load bytes @{offset}>", BytesSource(payload))
    literal = to_literal(trace.root) if trace.pure and trace.complete else NOT_LITERAL
    return PickleResult(
        end=trace.end,
        complete=trace.complete,
        literal=literal,
        globals=tuple(
            GlobalUse(ref, kind, first, count) for (ref, kind), (first, count) in trace.uses.items()
        ),
        persistent_ids=tuple(_pid_value(p) for p in trace.persistent_ids),
        protocol=trace.protocol,
        opcodes=trace.opcodes,
    )


def _pid_value(pid: Value) -> object:
    plain = to_literal(pid, keep_refs=True)
    return pid if plain is NOT_LITERAL else plain


def _emit(trace: Trace, ctx: ScanContext) -> None:
    policy = ctx.policy
    by_ref: dict[GlobalRef, tuple[set[UseKind], int, int]] = {}
    for (ref, kind), (first, count) in trace.uses.items():
        kinds, at, total = by_ref.get(ref, (set(), first, 0))
        kinds.add(kind)
        by_ref[ref] = (kinds, min(at, first), total + count)
    for ref, (kinds, at, total) in by_ref.items():
        verdict = classify(ref, kinds, allowed=policy.allowed_globals, denied=policy.denied_globals)
        if verdict.rule_id is None:
            continue
        uses = ", ".join(sorted(k.value for k in kinds))
        ctx.report(
            verdict.rule_id,
            f"{ref.dotted}: {verdict.reason}",
            offset=at,
            evidence=f"{ref.module} {ref.name} ({uses}; {total} use{'s' if total > 1 else ''})",
            severity=verdict.severity,
        )
    for event in trace.events:
        ctx.report(event.rule_id, event.message, offset=event.offset, evidence=event.evidence)


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, ValueError, OSError):
        return False
