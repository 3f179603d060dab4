"""Legacy torch checkpoints: stacked pickles (torch < 1.6) and the older ``.tar`` layout.

``torch.save(obj, f, _use_new_zipfile_serialization=False)`` (serialization.py,
``_legacy_save``) writes, back to back::

    pickle(MAGIC_NUMBER)   0x1950a86a20f9469cfc6c
    pickle(PROTOCOL_VERSION)   1001
    pickle(sys_info)       {"protocol_version", "little_endian", "type_sizes"}
    pickle(obj)            tensors as ("storage", type, key, location, numel, view) ids
    pickle(sorted keys)    the storage keys, in the order their bytes follow
    per key: numel as 8 bytes (native order), then numel * element_size bytes

``torch.load`` reads exactly that and stops: anything after the last storage is never read.
Every pickle goes through the canonical analyser; the storages are walked by the sizes the
main pickle declares, without reading their content.

Torch releases before 0.4 wrote a tar with members ``sys_info``, ``pickle``, ``storages`` and
``tensors`` instead (``_legacy_load.legacy_load``); ``torch.load`` still tries that first.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import IO, Final

from mamori.findings import FileFormat, Finding
from mamori.scan._internal.pushback import pushback
from mamori.scan._internal.scoped_context import MemberContext
from mamori.scan._internal.source import Source
from mamori.scan._internal.tarread import MemberKind, iter_tar_members
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext
from mamori.scan.formats.torch_common import (
    STORAGE_ELEMENT_SIZES,
    StorageRef,
    analyse_torch_pickle,
    storage_refs,
)
from mamori.scan.pickle import GlobalRef, PickleResult, analyse_one, analyse_stream

__all__ = ["MAGIC_NUMBER", "PROTOCOL_VERSION", "TorchLegacyHandler", "TorchTarHandler"]

MAGIC_NUMBER: Final = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION: Final = 1001

# The first pickle of a legacy file, as each pickle protocol spells MAGIC_NUMBER. A fixed
# signature, like any magic number; the content is then parsed by the pickle analyser.
_MAGIC_LONG1: Final = b"\x8a\x0a" + MAGIC_NUMBER.to_bytes(10, "little") + b"."
_MAGIC_PICKLES: Final = (
    b"L119547037146038801333356L\n.",  # protocols 0 and 1
    b"\x80\x02" + _MAGIC_LONG1,
    b"\x80\x03" + _MAGIC_LONG1,
    b"\x80\x04\x95\x0d" + bytes(7) + _MAGIC_LONG1,
    b"\x80\x05\x95\x0d" + bytes(7) + _MAGIC_LONG1,
)
_TYPE_SIZES: Final = frozenset({"short", "int", "long"})
_SKIP_CHUNK: Final = 1 << 20
_TAR_MEMBERS: Final = ("sys_info", "pickle", "storages", "tensors")
_TENSOR_FIXED: Final = 8  # int32 ndim + 4 bytes of padding (serialization.py legacy_load)
_MAX_NDIM: Final = 64


def _skip(stream: IO[bytes], n: int, ctx: ScanContext) -> int:
    done = 0
    while done < n:
        chunk = stream.read(min(_SKIP_CHUNK, n - done))
        if not chunk:
            break
        done += len(chunk)
        ctx.check_deadline()
    return done


def _sys_info_problem(literal: object) -> str | None:
    if not isinstance(literal, dict) or set(literal) != {
        "protocol_version",
        "little_endian",
        "type_sizes",
    }:
        return "sys_info is not the dict torch writes"
    if literal["protocol_version"] != PROTOCOL_VERSION:
        return f"sys_info protocol_version is {literal['protocol_version']!r}"
    if not isinstance(literal["little_endian"], bool):
        return "sys_info little_endian is not a bool"
    sizes = literal["type_sizes"]
    if not isinstance(sizes, dict) or set(sizes) != _TYPE_SIZES:
        return "sys_info type_sizes is not the dict torch writes"
    return None


@dataclass(slots=True)
class _Walk:
    """Reading position of the stacked-pickle walk."""

    stream: IO[bytes]
    ctx: ScanContext
    pos: int = 0
    byteorder: str = "little"

    def pickle(self, *, persistent_ids: bool = False) -> PickleResult | None:
        result = (
            analyse_torch_pickle(self.stream, self.ctx, offset_base=self.pos)
            if persistent_ids
            else analyse_one(self.stream, self.ctx, offset_base=self.pos)
        )
        if not result.complete:
            return None  # the analyser reported the broken pickle; the layout is lost
        self.pos = result.end
        return result

    def header(self) -> bool:
        """Check the magic, protocol and sys_info pickles; False when the walk must stop."""
        magic = self.pickle()
        if magic is None:
            return False
        if magic.literal != MAGIC_NUMBER:
            self.ctx.report("MAM-TORCH-008", "first pickle is not torch's magic number", offset=0)
        start = self.pos
        proto = self.pickle()
        if proto is None:
            return False
        if proto.literal != PROTOCOL_VERSION:
            self.ctx.report(
                "MAM-TORCH-008",
                f"protocol version {proto.literal!r} is not {PROTOCOL_VERSION}",
                offset=start,
            )
        start = self.pos
        info = self.pickle()
        if info is None:
            return False
        problem = _sys_info_problem(info.literal)
        if problem is not None:
            self.ctx.report("MAM-TORCH-008", problem, offset=start)
        elif isinstance(info.literal, dict) and info.literal["little_endian"] is False:
            self.byteorder = "big"
        return True

    def storages(self, keys: object, refs: list[StorageRef], keys_at: int) -> None:
        by_key: dict[str, StorageRef] = {}
        for ref in refs:
            by_key.setdefault(ref.key, ref)
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            self.ctx.report(
                "MAM-TORCH-010", "the storage keys pickle is not a list of strings", offset=keys_at
            )
            return
        listed = set(keys)
        if len(listed) != len(keys):
            self.ctx.report("MAM-TORCH-010", "the storage keys list repeats a key", offset=keys_at)
        for key in sorted(set(by_key) - listed):
            self.ctx.report(
                "MAM-TORCH-001",
                f"storage {key!r} is referenced by the pickle but not in the keys list",
                offset=keys_at,
            )
        for key in keys:
            found = by_key.get(key)
            if found is None:
                # torch.load raises on this key before reading its bytes; nothing after it
                # can be located.
                self.ctx.report(
                    "MAM-TORCH-010",
                    f"storage key {key!r} is not referenced by the pickle",
                    offset=keys_at,
                )
                return
            if not self.storage(found):
                return
        self.trailing()

    def storage(self, ref: StorageRef) -> bool:
        head = self.stream.read(8)
        if len(head) != 8:  # noqa: PLR2004 - int64 element count
            self.ctx.report(
                "MAM-TORCH-010", f"file ends before storage {ref.key!r}", offset=self.pos
            )
            return False
        numel = int.from_bytes(head, self.byteorder)  # type: ignore[arg-type]  # "little"/"big"
        if numel != ref.numel:
            self.ctx.report(
                "MAM-TORCH-003",
                f"storage {ref.key!r} holds {numel} elements, the pickle declares {ref.numel}",
                offset=self.pos,
            )
        self.pos += 8
        want = numel * STORAGE_ELEMENT_SIZES[ref.storage_type]
        got = _skip(self.stream, want, self.ctx)
        self.pos += got
        if got < want:
            self.ctx.report(
                "MAM-TORCH-010",
                f"storage {ref.key!r} is truncated: {got} of {want} bytes",
                offset=self.pos,
            )
            return False
        return True

    def trailing(self) -> None:
        rest = self.stream.read(1)
        if not rest:
            return
        self.ctx.report(
            "MAM-TORCH-009",
            "bytes follow the last storage; torch.load never reads them",
            offset=self.pos,
        )
        # Whatever hides there is analysed as pickles too: a second payload is the usual use.
        analyse_stream(pushback(rest, self.stream), self.ctx, offset_base=self.pos)


def _legacy_refs(pids: tuple[object, ...], ctx: ScanContext) -> list[StorageRef]:
    # ("module", cls, source_file, source) ids record nn.Module classes; the class is a global
    # the analyser already judged, and torch only compares the source text.
    storage_pids: list[object] = []
    for p in pids:
        if not (isinstance(p, tuple) and p and p[0] in ("module", b"module")):
            storage_pids.append(p)
        elif len(p) < 2 or not isinstance(p[1], GlobalRef):  # noqa: PLR2004 - (typename, cls, ...)
            # persistent_load returns p[1] and the pickle NEWOBJs it; only an imported class
            # (judged by the analyser) makes that harmless, so anything else is a finding.
            ctx.report("MAM-TORCH-004", "module persistent id does not name a class")
    return storage_refs(
        tuple(storage_pids), lambda why: ctx.report("MAM-TORCH-004", why), legacy=True
    )


def _is_module_class_instantiation(finding: Finding) -> bool:
    # The analyser's evidence for a computed callee is a bounded description
    # (pickle/effects.py ``short``): "<PersistentRef>" for every persistent id, so the pid
    # itself is checked after the walk in _legacy_refs. Calling a storage (the only other
    # thing legacy persistent_load returns) fails in torch.
    return (
        finding.rule_id == "MAM-PKL-008"
        and finding.message.startswith("NEWOBJ ")
        and finding.evidence == "<PersistentRef>"
    )


def scan_legacy_stream(stream: IO[bytes], ctx: ScanContext) -> None:
    """Walk a stacked-pickle legacy checkpoint from its first byte."""
    walk = _Walk(stream, ctx)
    if not walk.header():
        return
    # torch.save(module) in this format stores each nn.Module class as a persistent id
    # ("module", cls, source_file, source) and NEWOBJs the class persistent_load returns
    # (serialization.py, _legacy_load.persistent_load). The class itself is a GLOBAL the
    # analyser judges; only its "computed callee" finding is wrong here.
    walk.ctx = MemberContext(ctx, None, drop=_is_module_class_instantiation)
    main = walk.pickle(persistent_ids=True)
    walk.ctx = ctx
    if main is None:
        return
    refs = _legacy_refs(main.persistent_ids, ctx)
    keys_at = walk.pos
    keys = walk.pickle()
    if keys is None:
        return
    walk.storages(keys.literal, refs, keys_at)


class TorchLegacyHandler(FormatHandler):
    """``torch.save(..., _use_new_zipfile_serialization=False)`` stacked pickles."""

    format = FileFormat.TORCH_LEGACY
    refines = FileFormat.PICKLE

    def sniff(self, probe: Probe) -> bool:
        """The first pickle is torch's magic number."""
        return probe.head.startswith(_MAGIC_PICKLES)

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Analyse the five pickles and walk the storages in one forward pass."""
        with source.open() as stream:
            scan_legacy_stream(stream, ctx)


# --- the pre-0.4 tar layout ---------------------------------------------------------------


def _tar_first_name(head: bytes) -> str | None:
    if len(head) < 512 or head[257:262] != b"ustar":  # noqa: PLR2004 - ustar header layout
        return None
    return head[:100].split(b"\0", 1)[0].decode("ascii", "replace")


@dataclass(slots=True)
class _TarState:
    storages: int | None = None
    """How many storages the storages member holds (None until it was walked)."""


def _count(result: PickleResult, what: str, ctx: ScanContext) -> int | None:
    if not result.complete:
        return None
    literal = result.literal
    if not isinstance(literal, int) or isinstance(literal, bool) or literal < 0:
        ctx.report("MAM-TORCH-011", f"{what} count is not a non-negative integer", offset=0)
        return None
    return literal


def _storage_type(result: PickleResult) -> str | None:
    """The one torch storage class a ``(key, location, type)`` record names.

    The record is not plain data (the type is a global), so its literal is unavailable; the
    analyser's list of globals says which storage class it imports.
    """
    names = {use.ref.name for use in result.globals if use.ref.module == "torch"}
    others = [use for use in result.globals if use.ref.module != "torch"]
    if len(names) != 1 or others:
        return None
    (name,) = names
    return name if name in STORAGE_ELEMENT_SIZES else None


def _walk_tar_storages(stream: IO[bytes], ctx: ScanContext, state: _TarState) -> None:
    head = analyse_one(stream, ctx)
    count = _count(head, "storage", ctx)
    if count is None:
        return
    pos = head.end
    for _ in range(count):
        record = analyse_one(stream, ctx, offset_base=pos)
        if not record.complete:
            return
        stype = _storage_type(record)
        if stype is None:
            ctx.report(
                "MAM-TORCH-004", "storage record does not name one torch storage type", offset=pos
            )
            return
        pos = record.end
        size = stream.read(8)
        if len(size) != 8:  # noqa: PLR2004 - int64 element count
            ctx.report("MAM-TORCH-010", "storages member ends inside a storage", offset=pos)
            return
        want = int.from_bytes(size, "little") * STORAGE_ELEMENT_SIZES[stype]
        got = _skip(stream, want, ctx)
        pos += 8 + got
        if got < want:
            ctx.report("MAM-TORCH-010", "storages member ends inside a storage", offset=pos)
            return
    views = analyse_one(stream, ctx, offset_base=pos)
    if not views.complete:
        return
    state.storages = count
    if stream.read(1):
        ctx.report("MAM-TORCH-009", "bytes follow the storage views pickle", offset=views.end)


def _walk_tar_tensors(stream: IO[bytes], ctx: ScanContext) -> None:
    head = analyse_one(stream, ctx)
    count = _count(head, "tensor", ctx)
    if count is None:
        return
    pos = head.end
    for _ in range(count):
        record = analyse_one(stream, ctx, offset_base=pos)
        if not record.complete:
            return
        pos = record.end
        fixed = stream.read(_TENSOR_FIXED)
        if len(fixed) != _TENSOR_FIXED:
            ctx.report("MAM-TORCH-010", "tensors member ends inside a tensor", offset=pos)
            return
        (ndim,) = struct.unpack("<i", fixed[:4])
        # ndim sizes, ndim strides, one storage offset: all int64.
        want = 16 * ndim + 8 if 0 <= ndim <= _MAX_NDIM else -1
        got = _skip(stream, want, ctx) if want >= 0 else 0
        pos += _TENSOR_FIXED + got
        if want < 0 or got < want:
            ctx.report("MAM-TORCH-010", "tensor record is truncated or malformed", offset=pos)
            return
    if stream.read(1):
        ctx.report("MAM-TORCH-009", "bytes follow the last tensor record", offset=pos)


class TorchTarHandler(FormatHandler):
    """The pre-0.4 ``torch.save`` tar: sys_info, pickle, storages and tensors members."""

    format = FileFormat.TORCH_TAR
    refines = FileFormat.TAR
    needs_random_access = True

    def sniff(self, probe: Probe) -> bool:
        """A ustar archive whose first member is one of torch's four."""
        return _tar_first_name(probe.head) in _TAR_MEMBERS

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Check the four members and walk them; other members are scanned by content."""
        members: dict[str, Source] = {}
        for member in iter_tar_members(source, ctx):
            if member.kind is MemberKind.FILE and member.name in _TAR_MEMBERS:
                if member.name in members:
                    ctx.report("MAM-TORCH-011", f"member {member.name!r} appears twice")
                    continue
                assert member.source is not None
                members[member.name] = member.source
                ctx.scan_child(member.name, member.source, opaque=True)
            else:
                ctx.report(
                    "MAM-TORCH-011",
                    f"member {member.name!r} is not part of torch's tar layout",
                    evidence=member.name,
                )
                if member.source is not None:
                    ctx.scan_child(member.name, member.source)
        missing = [name for name in _TAR_MEMBERS if name not in members]
        if missing:
            ctx.report("MAM-TORCH-011", f"members missing: {', '.join(missing)}")
        state = _TarState()
        for name in ("sys_info", "storages", "tensors", "pickle"):
            content = members.get(name)
            if content is not None:
                self._walk(content, name, ctx, state)

    @staticmethod
    def _walk(source: Source, name: str, ctx: ScanContext, state: _TarState) -> None:
        member = MemberContext(ctx, name)
        with source.open() as stream:
            if name == "sys_info":
                result = analyse_one(stream, member)
                if result.complete:
                    problem = _sys_info_problem(result.literal)
                    if problem is not None:
                        member.report("MAM-TORCH-008", problem, offset=0)
            elif name == "storages":
                _walk_tar_storages(stream, member, state)
            elif name == "tensors":
                _walk_tar_tensors(stream, member)
            else:
                result = analyse_torch_pickle(stream, member)
                # persistent_load looks plain ids up among the storages and tensors; without
                # the storages member every such id dangles.
                dangling = [
                    pid
                    for pid in result.persistent_ids
                    if not (isinstance(pid, tuple) and pid and pid[0] in ("module", b"module"))
                ]
                if dangling and not state.storages:
                    member.report(
                        "MAM-TORCH-001",
                        f"{len(dangling)} persistent ids but no storages to resolve them",
                        evidence=repr(dangling[0])[:200],
                    )
