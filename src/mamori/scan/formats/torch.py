"""PyTorch zip checkpoints (``torch.save``) and TorchScript archives (``torch.jit.save``).

Both are zip files whose members all sit under one folder, ``<prefix>/``. PyTorch's reader
(``caffe2/serialize/inline_container.cc``) takes the prefix from the *first* member and looks
every record up under it, so members in another folder are invisible to torch but not to other
tools. ``torch.load`` treats the archive as TorchScript exactly when ``constants.pkl`` is
present (``serialization.py::_is_torchscript_zip``) and hands it to ``torch.jit.load``.

Layout written by torch 2.x (``serialization.py::_save`` and ``torch/csrc/jit/serialization``)::

    <prefix>/data.pkl                 the pickled object; tensors are persistent ids
    <prefix>/data/<key>               one raw storage per persistent id (never parsed here)
    <prefix>/.format_version, .storage_alignment, byteorder, version, .data/version,
    <prefix>/.data/serialization_id   small control records
    TorchScript adds: constants.pkl (+ constants/<key>), code/**.py (+ .debug_pkl),
    extra/** (user files), bytecode.pkl (lite interpreter), traced_inputs.pkl (+ folder)

Every ``*.pkl`` record is analysed with the canonical pickle analyser (persistent ids on);
its storages must exist in ``<stem>/<key>`` with exactly ``numel * element size`` bytes.
Storages are hashed as opaque members; every other member is scanned by its content.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from mamori.findings import FileFormat, Finding
from mamori.scan._internal.scoped_context import MemberContext
from mamori.scan._internal.source import Source
from mamori.scan._internal.zipread import ZipDirectory, ZipEntry, read_zip, zip_names_from_probe
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext
from mamori.scan.formats.torch_common import (
    StorageRef,
    analyse_torch_pickle,
    storage_refs,
)
from mamori.scan.formats.torchscript_code import BUILTIN_CLASS_NAMESPACES, check_torchscript_code
from mamori.scan.pickle import GlobalUse

__all__ = [
    "TORCHSCRIPT_GLOBALS",
    "TorchScriptHandler",
    "TorchZipHandler",
    "fold",
    "scan_torch_zip",
    "sniff_kind",
]

# Control records and what their content must look like (all short ASCII).
_CONTROL: Final[dict[str, re.Pattern[bytes]]] = {
    "version": re.compile(rb"\d{1,3}\n?"),
    ".data/version": re.compile(rb"\d{1,3}\n?"),
    ".format_version": re.compile(rb"\d{1,3}"),
    ".storage_alignment": re.compile(rb"\d{1,6}"),
    "byteorder": re.compile(rb"little|big"),
    ".data/serialization_id": re.compile(rb"[0-9A-Za-z_-]{1,128}"),
}
_MAX_CONTROL = 256
_CUSTOM_CLASS_PREFIX: Final = "__torch__.torch.classes."
_STORAGE_NAME: Final = re.compile(r"data/\d+")
_ZIP_PICKLES: Final = frozenset({"data.pkl"})
# torch.jit.save: the module, its constants, the lite-interpreter bytecode and the example
# inputs of traced modules; each stores its tensors under a folder of the same stem.
_SCRIPT_PICKLES: Final = frozenset(
    {"data.pkl", "constants.pkl", "bytecode.pkl", "traced_inputs.pkl"}
)
_MAX_CODE_BYTES: Final = 16 << 20

# Globals the TorchScript unpickler (torch/csrc/jit/serialization/unpickler.cpp, readGlobal)
# resolves itself; beside these it only accepts __torch__ classes compiled from code/.
TORCHSCRIPT_GLOBALS: Final = frozenset(
    {
        "torch._utils._rebuild_tensor_v2",  # tensor from a storage persistent id
        "torch._utils._rebuild_qtensor",  # quantized tensor from a storage
        "torch._utils._rebuild_sparse_tensor",  # sparse tensor from index/value tensors
        "torch.jit._pickle.build_intlist",  # typed list tag, returns its argument
        "torch.jit._pickle.build_tensorlist",  # typed list tag
        "torch.jit._pickle.build_doublelist",  # typed list tag
        "torch.jit._pickle.build_boollist",  # typed list tag
        "torch.jit._pickle.build_tensor_from_id",  # tensor table lookup
        "torch.jit._pickle.restore_type_tag",  # container type annotation
        "collections.OrderedDict",  # tensor backward hooks placeholder
        "torch.device",  # device constants
        "builtins.complex",  # complex constants
        "torch.per_tensor_affine",  # quantization schemes of quantized tensors
        "torch.per_channel_affine",
        "torch.per_tensor_symmetric",
        "torch.per_channel_symmetric",
        "torch.per_channel_affine_float_qparams",
        *(
            f"torch.{name}"
            for name in (
                "DoubleStorage",
                "FloatStorage",
                "HalfStorage",
                "LongStorage",
                "IntStorage",
                "ShortStorage",
                "CharStorage",
                "ByteStorage",
                "BoolStorage",
                "BFloat16Storage",
                "ComplexDoubleStorage",
                "ComplexFloatStorage",
                "QInt8Storage",
                "QInt32Storage",
                "QUInt8Storage",
                "QUInt4x2Storage",
                "QUInt2x4Storage",
                "UntypedStorage",
            )
        ),  # storage types named inside persistent ids
    }
)


@dataclass(frozen=True, slots=True)
class _Layout:
    prefix: str
    script: bool
    by_rel: dict[str, ZipEntry]
    outside: tuple[ZipEntry, ...]
    duplicates: tuple[tuple[str, ZipEntry], ...] = ()
    """Later entries whose name an earlier one already has (MAM-ZIP-003), with their rel."""

    def copies(self, rel: str) -> list[ZipEntry]:
        """Every entry named ``rel``: the one miniz (torch) reads first, then the others."""
        return [self.by_rel[rel], *(e for r, e in self.duplicates if r == rel)]

    def items(self) -> list[tuple[str, ZipEntry]]:
        """``(rel, entry)`` for every entry in the folder, duplicates included, sorted."""
        return sorted(
            [*self.by_rel.items(), *self.duplicates], key=lambda x: (x[0], x[1].local_header_offset)
        )


def _prefix_of(name: str) -> str | None:
    head, sep, _ = name.partition("/")
    return head if sep and head else None


_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(name: str) -> str:
    """A record name as torch compares it (ASCII letters lowered).

    miniz's ``mz_zip_reader_locate_file`` without ``MZ_ZIP_FLAG_CASE_SENSITIVE`` lowers ASCII
    letters only (``MZ_TOLOWER``), so ``archive/DATA.PKL`` answers a lookup of
    ``archive/data.pkl``.
    """
    return name.translate(_ASCII_LOWER)


def sniff_kind(names: list[str] | None) -> str | None:
    """``"zip"``, ``"script"`` or ``None`` from the (possibly partial) member list.

    The layout decides, as torch's reader sees it: the folder of the first member, and the
    records under it compared the way torch looks them up (ASCII case-insensitively).
    """
    if not names:
        return None
    prefix = _prefix_of(names[0])
    if prefix is None:
        return None
    folded = fold(prefix) + "/"
    rels = [fold(n)[len(folded) :] for n in names if fold(n).startswith(folded)]
    if "constants.pkl" in rels or any(r.startswith("code/") for r in rels):
        return "script"
    if "data.pkl" in rels:
        return "zip"
    # torch.jit.save writes storages before data.pkl; a head-only listing of a large
    # TorchScript file may end inside data/. torch.save always writes data.pkl first.
    # Storage keys are decimal (``id_map`` counters); anything else is some other zip.
    if rels and all(_STORAGE_NAME.fullmatch(r) or r.startswith("extra/") for r in rels):
        return "script"
    return None


def _layout(directory: ZipDirectory) -> _Layout | None:
    """Group the members the way ``PyTorchStreamReader`` (inline_container.cc) sees them.

    The folder is the part before the first ``/`` of the first central-directory entry.
    Records are found with miniz's ``mz_zip_reader_locate_file(name, flags=0)``: ASCII
    case-insensitive, by binary search over the names sorted case-insensitively, so among
    names that differ only by case (or not at all) *which* entry torch reads is not defined
    (measured with torch 2.13: the first copy in one archive, a later one in another). So
    ``rel`` is the folded name, and every copy of a name is checked like the first.
    ``getAllRecords`` (called by every ``torch.load``) compares the folder exactly and fails
    on any other name: those members are listed as ``outside`` but still checked as records.
    """
    if not directory.entries:
        return None
    prefix = _prefix_of(directory.entries[0].name)
    if prefix is None:
        return None
    folded_prefix = fold(prefix) + "/"
    by_rel: dict[str, ZipEntry] = {}
    outside: list[ZipEntry] = []
    duplicates: list[tuple[str, ZipEntry]] = []
    for entry in directory.entries:
        if not entry.name.startswith(prefix + "/"):
            outside.append(entry)
        if entry.is_dir and entry.size == 0:
            continue
        name = fold(entry.name)
        if not name.startswith(folded_prefix):
            continue
        rel = name[len(folded_prefix) :]
        if rel in by_rel:
            # MAM-ZIP-003 already; see the docstring for why every copy is checked.
            duplicates.append((rel, entry))
        else:
            by_rel[rel] = entry
    return _Layout(prefix, "constants.pkl" in by_rel, by_rel, tuple(outside), tuple(duplicates))


def _pickle_records(layout: _Layout) -> list[str]:
    """The pickle records torch itself reads, present in this archive."""
    known = _SCRIPT_PICKLES if layout.script else _ZIP_PICKLES
    return sorted(rel for rel in layout.by_rel if rel in known)


def _script_classes(layout: _Layout, directory: ZipDirectory, ctx: ScanContext) -> set[str]:
    """``__torch__.<module>.<Class>`` for each class defined in code/ (read with ``ast``)."""
    classes: set[str] = set()
    for rel, entry in layout.by_rel.items():
        if not (rel.startswith("code/") and rel.endswith(".py")):
            continue
        module = rel[len("code/") : -len(".py")].replace("/", ".")
        data = _read_small(directory, entry, ctx, _MAX_CODE_BYTES)
        if data is None:
            continue
        try:
            tree = ast.parse(data.decode("utf-8"))
        except (UnicodeDecodeError, SyntaxError, ValueError, MemoryError, RecursionError):
            continue  # reported by the code check
        classes.update(
            f"{module}.{node.name}" for node in tree.body if isinstance(node, ast.ClassDef)
        )
    return classes


def _builtin_class(dotted: str) -> bool | None:
    """For ``__torch__.torch.classes.<ns>.<Class>``: whether libtorch registers ``<ns>``.

    ``None`` when ``dotted`` is no custom-class name at all.
    """
    if not dotted.startswith(_CUSTOM_CLASS_PREFIX):
        return None
    namespace = dotted[len(_CUSTOM_CLASS_PREFIX) :].split(".", 1)[0]
    return namespace in BUILTIN_CLASS_NAMESPACES


def _drop_builtin_class_noise(finding: Finding) -> bool:
    """The analyser grades libtorch's own custom classes as unknown classes; they are not.

    MAM-PKL-003: their registered C++ ``__setstate__`` receives a tuple state, which the model
    grades as class code given data (a slot state); for libtorch's own classes it is reviewed.
    """
    evidence = finding.evidence or ""
    return finding.rule_id in {"MAM-PKL-003", "MAM-PKL-004", "MAM-PKL-006"} and bool(
        _builtin_class(evidence.split(" ", 1)[0])
    )


def _read_small(
    directory: ZipDirectory, entry: ZipEntry, ctx: ScanContext, limit: int
) -> bytes | None:
    if entry.size > limit or not directory.readable(entry):
        return None
    with directory.member_source(entry, ctx).open() as stream:
        return stream.read(limit + 1)


class _TorchArchiveScanner:
    """One scan of one torch zip; shared by the checkpoint and TorchScript handlers."""

    def __init__(self, directory: ZipDirectory, layout: _Layout, ctx: ScanContext) -> None:
        self.directory = directory
        self.layout = layout
        self.ctx = ctx
        # ids of the entries analysed here: the engine only hashes them. Identity, not name:
        # a second entry with the same name is a different member and is still analysed.
        self.opaque: set[int] = set()

    def rel_name(self, rel: str) -> str:
        return f"{self.layout.prefix}/{rel}"

    def run(self) -> None:
        layout, ctx = self.layout, self.ctx
        if layout.outside:
            others = sorted({e.name.split("/", 1)[0] for e in layout.outside})
            ctx.report(
                "MAM-TORCH-005",
                f"members outside the {layout.prefix!r} folder torch reads: torch.load "
                "refuses the archive, other tools read them",
                evidence=", ".join(others)[:200],
            )
            if any(e.name.endswith("/data.pkl") for e in layout.outside):
                ctx.report(
                    "MAM-TORCH-005",
                    "a second data.pkl lies in another folder; tools disagree on which loads",
                )
        self.check_controls()
        pickles = _pickle_records(layout)
        if "data.pkl" not in pickles:
            ctx.report("MAM-TORCH-007", "the archive has no data.pkl record")
        allowed: frozenset[str] = frozenset()
        if layout.script:
            allowed = TORCHSCRIPT_GLOBALS | _script_classes(layout, self.directory, ctx)
            self.check_code()
        referenced: set[str] = set()
        for rel in pickles:
            for entry in layout.copies(rel):
                referenced |= self.analyse_pickle(rel, entry, allowed)
        for rel, entry in layout.items():
            if rel.endswith(".debug_pkl") and rel.startswith("code/"):
                self.analyse_pickle(rel, entry, allowed)
        self.check_members(pickles, referenced)
        self.directory.scan_members(ctx, opaque=lambda e: id(e) in self.opaque)

    def check_controls(self) -> None:
        layout = self.layout
        if "version" not in layout.by_rel and ".data/version" not in layout.by_rel:
            self.ctx.report("MAM-TORCH-007", "the archive has no version record")
        for rel, entry in layout.items():
            pattern = _CONTROL.get(rel)
            if pattern is None:
                continue
            # Control records are validated here, so the engine only hashes them.
            self.opaque.add(id(entry))
            data = _read_small(self.directory, entry, self.ctx, _MAX_CONTROL)
            if data is None or not pattern.fullmatch(data):
                label = self.directory.label(entry)
                shown = rel if label == entry.name else label
                self.ctx.report(
                    "MAM-TORCH-007",
                    f"control record {shown!r} holds an unexpected value",
                    evidence=repr(data[:64]) if data is not None else "unreadable",
                )

    def check_code(self) -> None:
        for rel, entry in self.layout.items():
            if not (rel.startswith("code/") and rel.endswith(".py")):
                continue
            data = _read_small(self.directory, entry, self.ctx, _MAX_CODE_BYTES)
            member = MemberContext(self.ctx, self.directory.label(entry))
            self.opaque.add(id(entry))  # analysed here with ast; the engine only hashes it
            if data is None:
                member.report("MAM-TORCH-023", "code file too large or unreadable")
                continue
            for issue in check_torchscript_code(data):
                member.report(
                    issue.rule_id,
                    f"line {issue.line}: {issue.message}",
                    evidence=issue.evidence[:200],
                )

    def analyse_pickle(self, rel: str, entry: ZipEntry, allowed: frozenset[str]) -> set[str]:
        """Analyse one pickle record (one copy of ``rel``) in place; return its storage records."""
        self.opaque.add(id(entry))
        member = MemberContext(
            self.ctx,
            self.directory.label(entry),
            extra_allowed=allowed,
            drop=_drop_builtin_class_noise if self.layout.script else None,
        )
        if not self.directory.readable(entry):
            return set()  # the zip reader reported it (encrypted or unsupported method)
        with self.directory.member_source(entry, self.ctx).open() as stream:
            result = analyse_torch_pickle(stream, member)
            if result.complete and stream.read(1):
                member.report(
                    "MAM-TORCH-009",
                    "bytes follow the pickle's STOP opcode; torch never reads them",
                    offset=result.end,
                )
        if self.layout.script:
            unexpected = self._unexpected_globals(result.globals, allowed)
            if unexpected:
                member.report(
                    "MAM-TORCH-024",
                    "globals the TorchScript unpickler cannot resolve",
                    evidence=", ".join(sorted(unexpected))[:200],
                )
            custom = self._custom_classes(result.globals)
            if custom:
                member.report(
                    "MAM-TORCH-021",
                    "objects of custom classes from a native extension",
                    evidence=", ".join(sorted(custom))[:200],
                )
        if rel.startswith("code/"):
            return set()
        refs = storage_refs(
            result.persistent_ids,
            lambda why: member.report("MAM-TORCH-004", why),
        )
        return self.check_storages(rel[: -len(".pkl")], refs, member)

    @staticmethod
    def _unexpected_globals(uses: Iterable[GlobalUse], allowed: frozenset[str]) -> set[str]:
        return {
            use.ref.dotted
            for use in uses
            if use.ref.dotted not in allowed and _builtin_class(use.ref.dotted) is None
        }

    @staticmethod
    def _custom_classes(uses: Iterable[GlobalUse]) -> set[str]:
        return {use.ref.dotted for use in uses if _builtin_class(use.ref.dotted) is False}

    def check_storages(self, stem: str, refs: list[StorageRef], member: MemberContext) -> set[str]:
        seen: dict[str, StorageRef] = {}
        for ref in refs:
            rel = fold(f"{stem}/{ref.key}")
            entry = self.layout.by_rel.get(rel)
            if entry is None or "/" in ref.key or ref.key in ("", ".", ".."):
                member.report(
                    "MAM-TORCH-001",
                    f"storage {ref.key!r} has no {self.rel_name(rel)!r} record",
                    evidence=f"{ref.storage_type} numel={ref.numel}",
                )
                continue
            # torch.jit.save writes traced_inputs storages without their data
            # (torch/csrc/jit/serialization/export_module.cpp, skip_tensor_data).
            skipped = stem == "traced_inputs" and entry.size == 0
            if entry.size != ref.nbytes and not skipped:
                member.report(
                    "MAM-TORCH-003",
                    f"storage {ref.key!r} declares {ref.nbytes} bytes but its record holds "
                    f"{entry.size}",
                    evidence=f"{ref.storage_type} numel={ref.numel}",
                )
            seen.setdefault(rel, ref)
            # Only the copy torch reads is hashed without parsing; a duplicate (MAM-ZIP-003)
            # is scanned by content like any other member.
            self.opaque.add(id(entry))
        return set(seen)

    def check_members(self, pickles: list[str], referenced: set[str]) -> None:
        storage_dirs = tuple(p[: -len(".pkl")] + "/" for p in pickles)
        for rel, entry in sorted(self.layout.by_rel.items()):
            if rel in referenced or rel in pickles or rel in _CONTROL:
                continue
            if rel.startswith(storage_dirs) and rel.count("/") == 1:
                self.ctx.report(
                    "MAM-TORCH-002",
                    f"storage record {entry.name!r} is not referenced by any pickle",
                    evidence=entry.name,
                )
                continue
            if self.layout.script and rel.startswith(("code/", "extra/")):
                continue
            self.ctx.report(
                "MAM-TORCH-006",
                f"member {entry.name!r} is not part of the torch layout",
                evidence=entry.name,
            )


class _TorchZipBase(FormatHandler):
    refines = FileFormat.ZIP
    needs_random_access = True
    _kind: str

    def sniff(self, probe: Probe) -> bool:
        """A zip whose member names follow the torch layout (see the module docstring)."""
        if not probe.head.startswith(b"PK\x03\x04"):
            # torch's reader only opens archives that start with a local header
            # (serialization.py::_is_zipfile); anything else is not a torch zip to torch.
            return False
        return sniff_kind(zip_names_from_probe(probe)) == self._kind

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Check layout, control records, pickles and storages; scan the other members."""
        directory = read_zip(source, ctx)
        if not scan_torch_zip(directory, ctx):
            ctx.report("MAM-TORCH-007", "the archive has no member inside a folder")
            directory.scan_members(ctx)


def scan_torch_zip(directory: ZipDirectory, ctx: ScanContext) -> bool:
    """Scan ``directory`` as torch reads it; ``False`` (nothing done) when it has no layout.

    The zip handler calls this too, with the full member list, when the probe alone could not
    tell (a large archive whose names lie outside the probe): a torch checkpoint must get the
    torch reading whatever its size or name, or its pickle is misjudged as a plain one.
    """
    layout = _layout(directory)
    if layout is None:
        return False
    ctx.refine_format(FileFormat.TORCHSCRIPT if layout.script else FileFormat.TORCH_ZIP)
    _TorchArchiveScanner(directory, layout, ctx).run()
    return True


class TorchZipHandler(_TorchZipBase):
    """``torch.save`` zip checkpoints (torch >= 1.6)."""

    format = FileFormat.TORCH_ZIP
    _kind = "zip"


class TorchScriptHandler(_TorchZipBase):
    """``torch.jit.save`` TorchScript archives."""

    format = FileFormat.TORCHSCRIPT
    _kind = "script"
