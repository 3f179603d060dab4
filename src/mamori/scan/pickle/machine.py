"""The reference interpreter: executes a pickle program symbolically, one opcode at a time.

It mirrors CPython's ``_pickle.c`` Unpickler (a MARK starts a new stack frame, so no pop can
cross a mark; the memo is a dict; MEMOIZE stores at ``len(memo)``) but builds symbolic values
instead of objects, and records every imported global and how it is used. It never imports,
calls or unpickles anything.

Malformed input stops the interpretation exactly where the real loader would stop, and is
recorded as an event; everything recorded before the break stays (the "broken pickle" trick
of nullifAI runs its payload before the stream breaks).
"""

# Opcode bytes are compared by value throughout (0x8C is SHORT_BINUNICODE, named in a
# comment on each branch); 68 named constants would hide the byte being matched.
# ruff: noqa: PLR2004
from __future__ import annotations

import struct
from typing import IO, TYPE_CHECKING, Final

from mamori.scan.pickle.effects import Effects, short
from mamori.scan.pickle.reader import KEEP_LIMIT, Window
from mamori.scan.pickle.textargs import TextArgs
from mamori.scan.pickle.trace import Event, Malformed, Trace
from mamori.scan.pickle.values import (
    BigData,
    BufferV,
    ByteArrayV,
    CallKind,
    Container,
    DictV,
    FrozenSetV,
    GlobalRef,
    LazyBlock,
    ListV,
    Opaque,
    SetV,
    Value,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from mamori.scan.pickle.template import Template

__all__ = ["CHECK_EVERY", "HIGHEST_PROTOCOL", "Machine"]

HIGHEST_PROTOCOL: Final = 5
_MISSING: Final = object()
CHECK_EVERY: Final = 1 << 16
"""Opcodes between deadline checks: often enough to stop on time, rare enough to be free."""

_unpack_f64 = struct.Struct(">d").unpack_from
_unpack_i32 = struct.Struct("<i").unpack_from
_unpack_u32 = struct.Struct("<I").unpack_from
_unpack_u64 = struct.Struct("<Q").unpack_from
_unpack_u16 = struct.Struct("<H").unpack_from


class Machine(Effects, TextArgs):
    """Symbolic pickle interpreter over a :class:`Window`.

    ``loaders`` names the globals whose literal bytes argument is itself a pickle to analyse
    (``pickle.loads``); ``on_build`` is the hook run after each BUILD.
    """

    def __init__(
        self,
        window: Window,
        *,
        max_opcodes: int,
        deadline: Callable[[], None],
        is_loader: Callable[[GlobalRef], bool],
        on_build: Callable[[Value, Value, IO[bytes], int], None] | None = None,
        persistent_ids: bool = False,
        fast: Callable[[Machine], None] | None = None,
        max_memo: int = 1 << 62,
    ) -> None:
        self.w = window
        self.trace = Trace()
        self.stack: list[Value] = []
        self.metastack: list[list[Value]] = []
        self.memo: dict[int, Value] = {}
        self.max_opcodes = max_opcodes
        self.max_memo = max_memo
        self.deadline = deadline
        self.is_loader = is_loader
        self.on_build = on_build
        self.persistent_ids = persistent_ids
        self.frame_end = -1
        self.frame_noted = False
        self.next_check = CHECK_EVERY
        self.fast = fast
        # Lazy runs of the fast path (see lazy.py); always empty on the reference path.
        self.memo_extra = 0
        """Memo slots held by lazy runs: ``len(memo) + memo_extra`` is the memo's size."""
        self.segments: list[LazyBlock] = []
        self.block_frames: dict[int, int] = {}
        """id(frame) -> how many lazy blocks that stack frame holds."""
        self.on_missing_slot: Callable[[Machine, int], bool] | None = None
        """Set by the driver: brings a memo slot held outside ``memo`` back into it (a lazy
        run, a compacted slot); True when it did. Only asked when ``memo_extra`` > 0."""
        self.memo_dense = True
        self.templates: dict[type, Template] = {}
        self.template_wait = 0
        """No template attempt before this opcode count (back-off after a failed one)."""
        """Memo keys are exactly ``0 .. size-1`` (what picklers produce); lazy runs need it."""

    # --- helpers -------------------------------------------------------------------------

    def _need(self, n: int, at: int) -> None:
        if not self.w.fill(n):
            raise self._bad("pickle data was truncated", at)

    def _pop(self, at: int) -> Value:
        if not self.stack:
            raise self._bad("stack underflow", at)
        return self.stack.pop()

    def _pop_mark(self, at: int) -> list[Value]:
        if not self.metastack:
            raise self._bad("MARK expected but not found", at)
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def _data(self, n: int, at: int, kind: str) -> bytes | BigData:
        """Read an ``n``-byte argument; huge ones are skipped and stand in as BigData."""
        if n > KEEP_LIMIT:
            if self.w.skip(n) < n:
                raise self._bad("pickle data was truncated", at)
            return BigData(kind, n, at)
        self._need(n, at)
        w = self.w
        data = w.buf[w.pos : w.pos + n]
        w.pos += n
        return data

    def _text(self, data: bytes | BigData, at: int) -> str | BigData:
        if isinstance(data, BigData):
            return data
        try:
            return data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise self._bad("string is not valid UTF-8", at) from None

    # --- main loop -----------------------------------------------------------------------

    def run(self) -> Trace:
        """Interpret one pickle from the window's position up to and including STOP."""
        tr = self.trace
        try:
            self._loop()
        except Malformed as exc:
            tr.events.append(Event(exc.rule_id, exc.message, exc.offset))
        else:
            tr.complete = True
        tr.end = self.w.offset
        stopped_by_limit = any(e.rule_id.startswith("MAM-LIM-") for e in tr.events[-1:])
        if self.frame_end > tr.end and not self.frame_noted and not stopped_by_limit:
            tr.events.append(
                Event("MAM-PKL-016", "FRAME length runs past the end of the pickle", tr.end)
            )
        return tr

    def _loop(self) -> None:
        fast = self.fast
        while True:
            if fast is not None:
                fast(self)
            if self.step():
                return

    def step(self) -> bool:  # noqa: C901, PLR0912, PLR0915 - one dispatch on the opcode byte
        """Interpret exactly one opcode; True after STOP. Raises :class:`Malformed`."""
        w = self.w
        tr = self.trace
        if w.pos >= len(w.buf) and not w.fill(1):
            raise self._bad("pickle ends without STOP", w.offset)
        at = w.base + w.pos
        if self.frame_end >= 0 and at >= self.frame_end:
            self._frame_passed(at)
        op = w.buf[w.pos]
        w.pos += 1
        tr.opcodes += 1
        if tr.opcodes > self.max_opcodes:
            msg = f"more than {self.max_opcodes} opcodes in one pickle"

            raise self._bad(msg, at, "MAM-LIM-005")
        if tr.opcodes >= self.next_check:
            self.next_check = tr.opcodes + CHECK_EVERY
            self.deadline()
        st = self.stack
        if op == 0x8C:  # SHORT_BINUNICODE
            self._need(1, at)
            n = w.buf[w.pos]
            w.pos += 1
            st.append(self._text(self._data(n, at, "str"), at))
        elif op == 0x94:  # MEMOIZE
            if not st:
                raise self._bad("MEMOIZE on an empty stack", at)
            idx = len(self.memo) + self.memo_extra
            if idx >= self.max_memo:
                raise self._memo_full(at)
            self.memo[idx] = st[-1]
        elif op == 0x4B:  # BININT1
            self._need(1, at)
            st.append(w.buf[w.pos])
            w.pos += 1
        elif op == 0x4D:  # BININT2
            self._need(2, at)
            st.append(_unpack_u16(w.buf, w.pos)[0])
            w.pos += 2
        elif op == 0x4A:  # BININT
            self._need(4, at)
            st.append(_unpack_i32(w.buf, w.pos)[0])
            w.pos += 4
        elif op == 0x47:  # BINFLOAT
            self._need(8, at)
            st.append(_unpack_f64(w.buf, w.pos)[0])
            w.pos += 8
        elif op == 0x58:  # BINUNICODE
            self._need(4, at)
            n = _unpack_u32(w.buf, w.pos)[0]
            w.pos += 4
            st.append(self._text(self._data(n, at, "str"), at))
        elif op == 0x71:  # BINPUT
            self._need(1, at)
            self._put(w.buf[w.pos], at)
            w.pos += 1
        elif op == 0x72:  # LONG_BINPUT
            self._need(4, at)
            self._put(_unpack_u32(w.buf, w.pos)[0], at)
            w.pos += 4
        elif op == 0x68:  # BINGET
            self._need(1, at)
            st.append(self._get(w.buf[w.pos], at))
            w.pos += 1
        elif op == 0x6A:  # LONG_BINGET
            self._need(4, at)
            st.append(self._get(_unpack_u32(w.buf, w.pos)[0], at))
            w.pos += 4
        elif op == 0x28:  # MARK
            self.metastack.append(st)
            self.stack = []
        elif op == 0x65:  # APPENDS
            items = self._pop_mark(at)
            self._extend(self.stack, items, ListV, at, "APPENDS")
        elif op == 0x75:  # SETITEMS
            items = self._pop_mark(at)
            if len(items) % 2:
                raise self._bad("SETITEMS with an odd number of items", at)
            self._extend(self.stack, items, DictV, at, "SETITEMS")
        elif op == 0x90:  # ADDITEMS
            items = self._pop_mark(at)
            self._extend(self.stack, items, SetV, at, "ADDITEMS")
        elif op == 0x61:  # APPEND
            item = self._pop(at)
            self._extend(st, [item], ListV, at, "APPEND")
        elif op == 0x73:  # SETITEM
            value = self._pop(at)
            key = self._pop(at)
            self._extend(st, [key, value], DictV, at, "SETITEM")
        elif op == 0x5D:  # EMPTY_LIST
            st.append(ListV())
        elif op == 0x7D:  # EMPTY_DICT
            st.append(DictV())
        elif op == 0x29:  # EMPTY_TUPLE
            st.append(())
        elif op == 0x8F:  # EMPTY_SET
            st.append(SetV())
        elif op == 0x85:  # TUPLE1
            st.append((self._pop(at),))
        elif op == 0x86:  # TUPLE2
            b = self._pop(at)
            a = self._pop(at)
            st.append((a, b))
        elif op == 0x87:  # TUPLE3
            c = self._pop(at)
            b = self._pop(at)
            a = self._pop(at)
            st.append((a, b, c))
        elif op == 0x74:  # TUPLE
            tup = tuple(self._pop_mark(at))
            self.stack.append(tup)
        elif op == 0x6C:  # LIST
            lst = ListV()
            lst.extend(self._pop_mark(at))
            self.stack.append(lst)
        elif op == 0x64:  # DICT
            items = self._pop_mark(at)
            if len(items) % 2:
                raise self._bad("DICT with an odd number of items", at)
            dct = DictV()
            dct.extend(items)
            self.stack.append(dct)
        elif op == 0x91:  # FROZENSET
            fset = FrozenSetV(tuple(self._pop_mark(at)))
            self.stack.append(fset)
        elif op == 0x4E:  # NONE
            st.append(None)
        elif op == 0x88:  # NEWTRUE
            st.append(True)
        elif op == 0x89:  # NEWFALSE
            st.append(False)
        elif op == 0x95:  # FRAME
            self._need(8, at)
            n = _unpack_u64(w.buf, w.pos)[0]
            w.pos += 8
            self._frame(n, at)
        elif op == 0x2E:  # STOP
            self.trace.root = self._pop(at)
            if self.stack or self.metastack:
                # CPython ignores leftovers; a well-formed pickler never leaves any.
                tr.events.append(Event("MAM-PKL-010", "values left on the stack at STOP", at))
            if self.frame_end > w.offset and not self.frame_noted:
                self.frame_noted = True
                tr.events.append(
                    Event("MAM-PKL-016", "STOP inside a FRAME that claims more bytes", at)
                )
            return True
        else:
            self._rare(op, at)
        return False

    def _frame(self, n: int, at: int) -> None:
        # CPython's C unpickler only checks that the frame's bytes exist; the pure-Python one
        # also rejects a frame that does not end on an opcode boundary. A mismatch is a
        # parser differential, reported but not fatal.
        if self.frame_end > at and not self.frame_noted:
            self.frame_noted = True
            self.trace.events.append(
                Event("MAM-PKL-016", "FRAME begins inside the previous frame", at)
            )
        self.frame_end = self.w.offset + n

    def _frame_passed(self, at: int) -> None:
        if at > self.frame_end and not self.frame_noted:
            self.frame_noted = True
            self.trace.events.append(
                Event("MAM-PKL-016", "an opcode straddles the end of its FRAME", at)
            )
        self.frame_end = -1

    def _put(self, idx: int, at: int) -> None:
        if not self.stack:
            raise self._bad("PUT on an empty stack", at)
        if self.memo_extra and idx not in self.memo and self.on_missing_slot is not None:
            self.on_missing_slot(self, idx)  # a slot held outside the memo: bring it back first
        if idx not in self.memo and len(self.memo) + self.memo_extra >= self.max_memo:
            raise self._memo_full(at)
        if idx > len(self.memo) + self.memo_extra:
            self.memo_dense = False
        self.memo[idx] = self.stack[-1]

    def _memo_full(self, at: int) -> Malformed:
        return self._bad(f"more than {self.max_memo} memo entries", at, "MAM-LIM-007")

    def _get(self, idx: int, at: int) -> Value:
        value = self.memo.get(idx, _MISSING)
        if (
            value is _MISSING
            and self.memo_extra
            and self.on_missing_slot is not None
            and self.on_missing_slot(self, idx)
        ):
            value = self.memo.get(idx, _MISSING)
        if value is _MISSING:
            msg = f"memo key {idx} is not defined"
            raise self._bad(msg, at)
        return value  # type: ignore[return-value]  # _MISSING excluded above

    def _extend(
        self,
        st: list[Value],
        items: list[Value],
        kind: type[Container],
        at: int,
        opname: str,
    ) -> None:
        if not st:
            msg = f"{opname} without a target"
            raise self._bad(msg, at)
        target = st[-1]
        if isinstance(target, kind):
            target.extend(items)
        elif not self._items(target, items, opname, at):
            # Plain data without the method the loader looks up: it raises here.
            msg = f"{opname} on a {type(target).__name__}"
            raise self._bad(msg, at)

    def _rare(self, op: int, at: int) -> None:  # noqa: C901, PLR0912, PLR0915 - dispatch
        w = self.w
        tr = self.trace
        st = self.stack
        if op == 0x80:  # PROTO
            self._need(1, at)
            proto = w.buf[w.pos]
            w.pos += 1
            if proto > HIGHEST_PROTOCOL:
                msg = f"unsupported pickle protocol {proto}"

                raise self._bad(msg, at, "MAM-PKL-012")
            tr.protocol = proto
        elif op == 0x93:  # STACK_GLOBAL
            name = self._pop(at)
            module = self._pop(at)
            tr.pure = False
            if isinstance(module, str) and isinstance(name, str):
                st.append(self._global(module, name, at))
            else:
                tr.events.append(
                    Event(
                        "MAM-PKL-007",
                        "STACK_GLOBAL operands are not two strings; the imported name "
                        "cannot be determined",
                        at,
                        f"module={short(module)} name={short(name)}",
                    )
                )
                st.append(Opaque("unresolvable STACK_GLOBAL"))
        elif op == 0x63:  # GLOBAL
            module = self._ascii(self._line(at), at)
            name = self._ascii(self._line(at), at)
            tr.pure = False
            st.append(self._global(module, name, at))
        elif op == 0x52:  # REDUCE
            args = self._pop(at)
            func = self._pop(at)
            tr.pure = False
            st.append(self._call(func, args, CallKind.REDUCE, at))
        elif op == 0x62:  # BUILD
            state = self._pop(at)
            if not st:
                raise self._bad("BUILD without a target", at)
            target = st[-1]
            tr.pure = False
            self._build(target, state, at)
        elif op == 0x81:  # NEWOBJ
            args = self._pop(at)
            cls = self._pop(at)
            tr.pure = False
            st.append(self._call(cls, args, CallKind.NEWOBJ, at))
        elif op == 0x92:  # NEWOBJ_EX
            kwargs = self._pop(at)
            args = self._pop(at)
            cls = self._pop(at)
            tr.pure = False
            st.append(self._call(cls, args, CallKind.NEWOBJ_EX, at, kwargs))
        elif op == 0x6F:  # OBJ
            items = self._pop_mark(at)
            if not items:
                raise self._bad("OBJ without a class", at)
            tr.pure = False
            self.stack.append(self._call(items[0], tuple(items[1:]), CallKind.OBJ, at))
        elif op == 0x69:  # INST
            module = self._ascii(self._line(at), at)
            name = self._ascii(self._line(at), at)
            inst_args = self._pop_mark(at)
            tr.pure = False
            ref = self._global(module, name, at)
            self.stack.append(self._call(ref, tuple(inst_args), CallKind.INST, at))
        elif op in (0x82, 0x83, 0x84):  # EXT1, EXT2, EXT4
            size = {0x82: 1, 0x83: 2, 0x84: 4}[op]
            self._need(size, at)
            code = int.from_bytes(w.buf[w.pos : w.pos + size], "little", signed=op == 0x84)
            w.pos += size
            tr.pure = False
            tr.events.append(
                Event(
                    "MAM-PKL-007",
                    "extension code imports whatever the loader's copyreg registry maps it "
                    "to; the name cannot be determined from the file",
                    at,
                    f"EXT code {code}",
                )
            )
            st.append(Opaque(f"extension code {code}"))
        elif op == 0x50:  # PERSID
            pid = self._ascii(self._line(at), at)
            self._persistent(pid, at)
        elif op == 0x51:  # BINPERSID
            self._persistent(self._pop(at), at)
        elif op == 0x49:  # INT
            line = self._line(at)
            if line == b"00":
                st.append(False)
            elif line == b"01":
                st.append(True)
            else:
                st.append(self._int(line, at))
        elif op == 0x4C:  # LONG
            line = self._line(at)
            st.append(self._int(line.removesuffix(b"L"), at))
        elif op == 0x8A:  # LONG1
            self._need(1, at)
            n = w.buf[w.pos]
            w.pos += 1
            st.append(self._long(self._data(n, at, "long"), at))
        elif op == 0x8B:  # LONG4
            self._need(4, at)
            n = _unpack_i32(w.buf, w.pos)[0]
            w.pos += 4
            if n < 0:
                raise self._bad("LONG4 with a negative length", at)
            st.append(self._long(self._data(n, at, "long"), at))
        elif op == 0x46:  # FLOAT
            line = self._line(at)
            try:
                st.append(float(line))
            except ValueError:
                raise self._bad("FLOAT argument is not a number", at) from None
        elif op == 0x53:  # STRING
            st.append(self._string_nl(self._line(at), at))
        elif op == 0x54:  # BINSTRING
            self._need(4, at)
            n = _unpack_i32(w.buf, w.pos)[0]
            w.pos += 4
            if n < 0:
                raise self._bad("BINSTRING with a negative length", at)
            st.append(self._latin1(self._data(n, at, "str"), at))
        elif op == 0x55:  # SHORT_BINSTRING
            self._need(1, at)
            n = w.buf[w.pos]
            w.pos += 1
            st.append(self._latin1(self._data(n, at, "str"), at))
        elif op == 0x56:  # UNICODE
            line = self._line(at)
            try:
                st.append(line.decode("raw-unicode-escape"))
            except UnicodeDecodeError:
                raise self._bad("UNICODE argument does not decode", at) from None
        elif op == 0x8D:  # BINUNICODE8
            self._need(8, at)
            n = _unpack_u64(w.buf, w.pos)[0]
            w.pos += 8
            st.append(self._text(self._data(n, at, "str"), at))
        elif op == 0x42:  # BINBYTES
            self._need(4, at)
            n = _unpack_u32(w.buf, w.pos)[0]
            w.pos += 4
            st.append(self._data(n, at, "bytes"))
        elif op == 0x43:  # SHORT_BINBYTES
            self._need(1, at)
            n = w.buf[w.pos]
            w.pos += 1
            st.append(self._data(n, at, "bytes"))
        elif op in (0x8E, 0x96):  # BINBYTES8, BYTEARRAY8
            self._need(8, at)
            n = _unpack_u64(w.buf, w.pos)[0]
            w.pos += 8
            data = self._data(n, at, "bytes")
            st.append(ByteArrayV(data) if op == 0x96 else data)
        elif op == 0x97:  # NEXT_BUFFER
            tr.pure = False
            tr.events.append(
                Event(
                    "MAM-PKL-017",
                    "out-of-band buffer: its bytes are not in the file and were not analysed",
                    at,
                )
            )
            st.append(BufferV(readonly=False))
        elif op == 0x98:  # READONLY_BUFFER
            if not st:
                raise self._bad("READONLY_BUFFER on an empty stack", at)
            top = st[-1]
            if isinstance(top, BufferV):
                st[-1] = BufferV(readonly=True)
        elif op == 0x30:  # POP
            if st:
                st.pop()
            else:
                self._pop_mark(at)
        elif op == 0x31:  # POP_MARK
            self._pop_mark(at)
        elif op == 0x32:  # DUP
            if not st:
                raise self._bad("DUP on an empty stack", at)
            st.append(st[-1])
        elif op == 0x67:  # GET
            st.append(self._get(self._int(self._line(at), at), at))
        elif op == 0x70:  # PUT
            idx = self._int(self._line(at), at)
            if idx < 0:
                raise self._bad("negative PUT argument", at)
            self._put(idx, at)
        else:
            msg = f"unknown opcode 0x{op:02x}"

            raise self._bad(msg, at, "MAM-PKL-011")

    # --- semantic helpers ----------------------------------------------------------------
