"""Bounded memory for the symbolic memo: compact what can no longer reach a call site.

CPython's unpickler keeps every memoized object alive until the load ends, and so must the
analyser: any later GET may fetch it. Kept as Python objects, 12 million memoized two-letter
strings cost about 2 GB. :class:`ColdMemo` holds instead, per slot, one kind byte and one
8-byte word, plus an encoding in a shared byte pool:

* **immutable data** (``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes`` and tuples of
  these) is encoded *losslessly*; a GET decodes an equal value, so nothing the analysis needs
  (a STACK_GLOBAL operand, the bytes handed to ``pickle.loads``) is lost;
* **mutable data-only containers** (a list, dict or set holding only such data, recursively)
  that nothing but the memo references any more are *summarised* as their type and size. Only
  builtin containers of plain data, so the unpickler calls nothing on them or on their items;
  a GET gets a container of that type that counts the items (not literal any more), stored
  back so later GETs share it as they would share the real object;
* everything else (globals, call results, persistent ids, containers holding any of these or
  shared with a live value) stays an object in the machine's ``memo`` dict.

:func:`compact` moves slots from the hot ``memo`` dict into the cold store when the dict has
grown; the machine counts moved slots in ``memo_extra`` (so MEMOIZE still numbers slots as
CPython does) and asks :meth:`ColdMemo.take` for a slot missing from the dict.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left
from typing import TYPE_CHECKING, Final, cast

from mamori.scan.pickle.values import DictV, FrozenSetV, ListV, SetV, Value

if TYPE_CHECKING:
    from mamori.scan.pickle.machine import Machine

__all__ = ["COMPACT_AFTER", "ColdMemo", "compact"]

COMPACT_AFTER: Final = 1 << 16
"""Hot memo entries before the first compaction; later ones wait until it doubles."""

_ABSENT: Final = 0
_POOLED: Final = 1
_SUMMARY: Final[dict[type[ListV | DictV | SetV], int]] = {ListV: 2, DictV: 3, SetV: 4}
_SUMMARY_TYPE: Final = {v: k for k, v in _SUMMARY.items()}
_SCALARS: Final = frozenset({str, bytes, int, float, bool, type(None)})
_MOVABLE: Final = _SCALARS | {tuple, ListV, DictV, SetV}
_MAX_DEPTH: Final = 8
_MAX_ENCODED: Final = 1 << 20
"""Larger encodings stay objects (they are few: each needs a megabyte of file)."""
_DENSE: Final = 2
"""A batch is stored densely (no key array) when it fills at least half its key range."""

_i64 = struct.Struct("<q")
_f64 = struct.Struct("<d")


class _Unencodable(Exception):  # noqa: N818 - internal control flow
    pass


def _encode(value: object, out: bytearray, depth: int) -> None:  # noqa: C901 - one branch per type
    """Append a tagged encoding of immutable plain data; raise _Unencodable otherwise.

    The caller bounds the encoding's size (:data:`_MAX_ENCODED`).
    """
    kind = type(value)
    if value is None:
        out.append(0)
    elif value is True:
        out.append(1)
    elif value is False:
        out.append(2)
    elif kind is int:
        v = int(value)  # type: ignore[call-overload]  # kind checked
        if -(1 << 63) <= v < (1 << 63):
            out.append(3)
            out += _i64.pack(v)
        else:
            raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
            out.append(4)
            _length(out, len(raw))
            out += raw
    elif kind is float:
        out.append(5)
        out += _f64.pack(value)
    elif kind is str:
        raw = str(value).encode("utf-8", "surrogatepass")
        out.append(6)
        _length(out, len(raw))
        out += raw
    elif kind is bytes:
        data = cast("bytes", value)
        out.append(7)
        _length(out, len(data))
        out += data
    elif kind is tuple and depth < _MAX_DEPTH:
        items: tuple[object, ...] = value  # type: ignore[assignment]  # kind checked
        out.append(8)
        _length(out, len(items))
        for item in items:
            _encode(item, out, depth + 1)
    else:
        raise _Unencodable


def _length(out: bytearray, n: int) -> None:
    while n >= 0x80:  # noqa: PLR2004 - varint continuation bit
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _decode(pool: bytearray, at: int) -> tuple[Value, int]:  # noqa: PLR0911 - one branch per tag
    tag = pool[at]
    at += 1
    if tag == 0:
        return None, at
    if tag == 1:
        return True, at
    if tag == 2:  # noqa: PLR2004 - tags as written by _encode
        return False, at
    if tag == 3:  # noqa: PLR2004
        return _i64.unpack_from(pool, at)[0], at + 8
    if tag == 5:  # noqa: PLR2004
        return _f64.unpack_from(pool, at)[0], at + 8
    if tag == 8:  # noqa: PLR2004
        n, at = _read_length(pool, at)
        items = []
        for _ in range(n):
            item, at = _decode(pool, at)
            items.append(item)
        return tuple(items), at
    n, at = _read_length(pool, at)
    raw = bytes(pool[at : at + n])
    at += n
    if tag == 6:  # noqa: PLR2004
        return raw.decode("utf-8", "surrogatepass"), at
    if tag == 7:  # noqa: PLR2004
        return raw, at
    return int.from_bytes(raw, "little", signed=True), at


def _read_length(pool: bytearray, at: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        byte = pool[at]
        at += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:  # noqa: PLR2004 - varint continuation bit
            return n, at
        shift += 7


class _Batch:
    """Slots moved by one compaction: keys ``lo + i`` (dense) or ``keys[i]`` (sparse)."""

    __slots__ = ("keys", "kinds", "lo", "words")

    def __init__(
        self, lo: int, kinds: bytearray, words: array[int], keys: array[int] | None
    ) -> None:
        self.lo = lo
        self.kinds = kinds
        self.words = words
        self.keys = keys

    def find(self, idx: int) -> int:
        """Position of ``idx`` in this batch, or -1."""
        if self.keys is None:
            at = idx - self.lo
            return at if 0 <= at < len(self.kinds) else -1
        at = bisect_left(self.keys, idx)
        return at if at < len(self.keys) and self.keys[at] == idx else -1


class ColdMemo:
    """Memo slots held compactly outside the machine's ``memo`` dict."""

    def __init__(self) -> None:
        self.pool = bytearray()
        self.batches: list[_Batch] = []
        self.count = 0
        """Slots held (also counted in the machine's ``memo_extra``)."""
        self.summarised = 0
        """Containers replaced by a type-and-size summary (for the report's evidence)."""
        self.next_compaction = COMPACT_AFTER
        self.kept: set[int] = set()
        """Memo keys of tuples that are not plain data (not tried again)."""

    def take(self, idx: int) -> tuple[bool, Value]:
        """Remove slot ``idx`` and return ``(True, value)``; ``(False, None)`` if not held."""
        if not self.count:
            return False, None
        for batch in reversed(self.batches):
            at = batch.find(idx)
            if at < 0 or batch.kinds[at] == _ABSENT:
                continue
            kind = batch.kinds[at]
            batch.kinds[at] = _ABSENT
            self.count -= 1
            if kind == _POOLED:
                return True, _decode(self.pool, batch.words[at])[0]
            made: ListV | DictV | SetV = _SUMMARY_TYPE[kind]()
            made.dropped = batch.words[at]
            return True, made
        return False, None

    def nbytes(self) -> int:
        """Memory held, approximately (pool plus per-slot arrays)."""
        per_slot = sum(
            len(b.kinds) * 9 + (8 * len(b.keys) if b.keys is not None else 0) for b in self.batches
        )
        return len(self.pool) + per_slot


def _data_only(value: object, depth: int) -> bool:
    """Plain immutable data or builtin containers of it: nothing in it can be called."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if depth >= _MAX_DEPTH:
        return False
    if kind is tuple:
        items: object = value
    elif kind in _SUMMARY or kind is FrozenSetV:
        items = value.items  # type: ignore[attr-defined]  # containers
    else:
        return False
    for item in items:  # type: ignore[attr-defined]  # iterable by the checks above
        if type(item) not in _SCALARS and not _data_only(item, depth + 1):
            return False
    return True


def _summary_alone() -> int:
    """``sys.getrefcount`` of a value only a dict holds, in the expression ``_move`` uses."""
    probe: dict[int, Value] = {0: ListV()}
    key = 0
    return sys.getrefcount(probe[key])


_SUMMARY_ALONE: Final = _summary_alone()


def compact(m: Machine, cold: ColdMemo) -> None:
    """Move the memo's compactable slots into ``cold`` (call when ``len(m.memo)`` is large)."""
    memo = m.memo
    kinds = bytearray()
    words: list[int] = []
    keys: list[int] = []
    kept = cold.kept
    for key in sorted(memo):
        if type(memo[key]) not in _MOVABLE or key in kept:
            continue  # call results, globals, persistent ids stay (cheaply skipped)
        moved = _move(memo, key, cold)
        if moved is None:
            continue
        kinds.append(moved[0])
        words.append(moved[1])
        keys.append(key)
        del memo[key]
    if keys:
        _store(cold, keys, kinds, words)
        cold.count += len(keys)
        m.memo_extra += len(keys)
    cold.next_compaction = max(COMPACT_AFTER, 2 * len(memo))


def _move(memo: dict[int, Value], key: int, cold: ColdMemo) -> tuple[int, int] | None:  # noqa: C901, PLR0911 - one exit per kind
    """Encode or summarise ``memo[key]`` into ``cold``: (kind, word), or None to keep it."""
    kind = type(memo[key])
    pool = cold.pool
    at = len(pool)
    if kind is str:
        # The common case first: most memoized values of a big pickle are strings.
        raw = cast("str", memo[key]).encode("utf-8", "surrogatepass")
        if len(raw) > _MAX_ENCODED:
            return None
        pool.append(6)
        if len(raw) < 0x80:  # noqa: PLR2004 - a one-byte varint, inline
            pool.append(len(raw))
        else:
            _length(pool, len(raw))
        pool += raw
        return _POOLED, at
    if kind in _SUMMARY:
        # A data container: summarised only when the memo alone holds it (the reference
        # count seen here, calibrated in _SUMMARY_ALONE) and it holds only plain data.
        if sys.getrefcount(memo[key]) != _SUMMARY_ALONE:
            return None
        held = cast("ListV | DictV | SetV", memo[key])
        if not (set(map(type, held.items)) <= _SCALARS or _data_only(held, 0)):
            return None
        cold.summarised += 1
        return _SUMMARY[kind], len(held.items) + held.dropped
    if kind not in _SCALARS and kind is not tuple:
        return None
    if kind is tuple and (key in cold.kept or not _data_only(memo[key], 0)):
        # A tuple holding a global or a call (a torch persistent id) never becomes plain;
        # remember it so later compactions do not try it again.
        cold.kept.add(key)
        return None
    try:
        _encode(memo[key], pool, 0)
    except _Unencodable:
        del pool[at:]
        return None
    if len(pool) - at > _MAX_ENCODED:
        del pool[at:]
        return None
    return _POOLED, at


def _store(cold: ColdMemo, keys: list[int], kinds: bytearray, words: list[int]) -> None:
    """Add one compaction's slots: to the last dense batch when they continue it."""
    lo, hi = keys[0], keys[-1] + 1
    last = cold.batches[-1] if cold.batches else None
    if last is not None and last.keys is None and lo >= last.lo:
        # Picklers number memo slots in order, so each compaction usually continues the last
        # range (or fills slots an earlier one left): one growing batch keeps lookups O(1)
        # instead of one probe per compaction. Slots are unique, so none is overwritten.
        start = last.lo
        grow = max(0, hi - start - len(last.kinds))
        if grow <= _DENSE * len(keys):
            last.kinds.extend(bytes(grow))
            last.words.extend(array("q", bytes(8 * grow)))
            for key, kind, word in zip(keys, kinds, words, strict=True):
                last.kinds[key - start] = kind
                last.words[key - start] = word
            return
    if (hi - lo) <= _DENSE * len(keys):
        dense_kinds = bytearray(hi - lo)
        dense_words = array("q", bytes(8 * (hi - lo)))
        for key, kind, word in zip(keys, kinds, words, strict=True):
            dense_kinds[key - lo] = kind
            dense_words[key - lo] = word
        cold.batches.append(_Batch(lo, dense_kinds, dense_words, None))
    else:
        cold.batches.append(_Batch(lo, kinds, array("q", words), array("q", keys)))


def shed(m: Machine) -> int:
    """Under memory pressure: empty every builtin container that holds only plain data.

    Reached from the stack or the memo, each list, dict or set whose items are plain data
    (nothing in it can be called, imported or instantiated) keeps counting its items but
    stops holding them, exactly as a container past its keep cap does; every alias sees the
    change, since the object itself is kept. Call results are not entered: their arguments
    and state are the evidence of a call. Returns how many items were let go.
    """
    seen: set[int] = set()
    freed = 0
    todo: list[object] = [v for frame in (*m.metastack, m.stack) for v in frame]
    todo.extend(m.memo.values())
    while todo:
        value = todo.pop()
        kind = type(value)
        if kind is tuple:
            todo.extend(cast("tuple[object, ...]", value))
            continue
        if kind not in _SUMMARY or id(value) in seen:
            continue
        seen.add(id(value))
        held = cast("ListV | DictV | SetV", value)
        if held.items and _data_only(held, 0):
            freed += len(held.items)
            held.dropped += len(held.items)
            held.items = []
        else:
            todo.extend(held.items)
    return freed
