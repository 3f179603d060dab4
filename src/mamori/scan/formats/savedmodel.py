"""TensorFlow SavedModel: ``saved_model.pb`` and Keras 2's ``keras_metadata.pb``, no TensorFlow.

A SavedModel is a directory; scanning it scans each file, and this handler claims the two
protobuf files by content. ``saved_model.pb`` is decoded with a hand-written wire-format reader
(:mod:`mamori.scan._internal.protowire`) along the schema in TensorFlow's
``core/protobuf/saved_model.proto`` (``SavedModel.meta_graphs`` = 2), ``meta_graph.proto``
(``MetaGraphDef.graph_def`` = 2, ``saver_def`` = 3), ``core/framework/graph.proto``
(``GraphDef.node`` = 1, ``library`` = 2), ``function.proto`` (``FunctionDefLibrary.function``
= 1; ``FunctionDef.signature`` = 1, ``node_def`` = 3) and ``node_def.proto`` (``name`` = 1,
``op`` = 2, ``input`` = 3, ``attr`` = 5).

Every node of the graph and of every function in the library is checked against a table of
ops that run Python, touch the file system or the network when the graph executes. Checkpoint
ops (SaveV2, RestoreV2, ...) are the normal contents of the saver subgraph (``save/`` scope in
TF1, the ``__inference__traced_save_N``/``_restore_N`` functions in TF2) and are only flagged
elsewhere. ``keras_metadata.pb`` (``SavedMetadata.nodes`` = 1, ``SavedObject.metadata`` = 5)
holds Keras JSON configs, which go through the shared Keras walker.
"""

from __future__ import annotations

import enum
import mmap
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar, Final

from mamori.findings import FileFormat
from mamori.scan._internal.keras_config import report_keras_json
from mamori.scan._internal.protowire import Field, ProtoError, WireType, iter_fields, read_varint
from mamori.scan._internal.source import BytesSource, FileRegion, Source
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext

__all__ = [
    "RISKY_OPS",
    "OpRisk",
    "SavedModelHandler",
    "looks_like_fingerprint",
    "looks_like_keras_metadata",
]


class OpRisk(enum.Enum):
    """What an op does outside the tensor world when the graph runs."""

    PYTHON = "python-exec"
    FILE = "file-system"
    NETWORK = "network"
    CHECKPOINT = "checkpoint"
    OUTPUT = "output-to-file"
    ASSET = "asset-read"


_RULE: Final[dict[OpRisk, str]] = {
    OpRisk.PYTHON: "MAM-TF-001",
    OpRisk.FILE: "MAM-TF-002",
    OpRisk.CHECKPOINT: "MAM-TF-002",
    OpRisk.NETWORK: "MAM-TF-003",
    OpRisk.OUTPUT: "MAM-TF-004",
    OpRisk.ASSET: "MAM-TF-006",
}

_P, _F, _N, _C, _O, _A = (
    OpRisk.PYTHON,
    OpRisk.FILE,
    OpRisk.NETWORK,
    OpRisk.CHECKPOINT,
    OpRisk.OUTPUT,
    OpRisk.ASSET,
)
# Op names from TensorFlow's registry (tf.raw_ops, TF 2.21), with why each is listed.
RISKY_OPS: Final[dict[str, tuple[OpRisk, str]]] = {
    "PyFunc": (_P, "tf.py_function/numpy_function: calls a Python callable"),
    "PyFuncStateless": (_P, "stateless variant of PyFunc"),
    "EagerPyFunc": (_P, "tf.py_function in eager mode"),
    "ReadFile": (_F, "tf.io.read_file: reads any path"),
    "WriteFile": (_F, "tf.io.write_file: writes any path"),
    "MatchingFiles": (_F, "tf.io.matching_files: lists directories"),
    "ImmutableConst": (_F, "memory-maps the file named in memory_region_name"),
    "WholeFileReader": (_F, "reads whole files"),
    "WholeFileReaderV2": (_F, "reads whole files"),
    "TextLineReader": (_F, "reads text files"),
    "TextLineReaderV2": (_F, "reads text files"),
    "FixedLengthRecordReader": (_F, "reads files"),
    "FixedLengthRecordReaderV2": (_F, "reads files"),
    "TFRecordReader": (_F, "reads TFRecord files"),
    "TFRecordReaderV2": (_F, "reads TFRecord files"),
    "LMDBReader": (_F, "reads LMDB databases"),
    "TextLineDataset": (_F, "reads text files"),
    "TFRecordDataset": (_F, "reads TFRecord files"),
    "TFRecordDatasetV2": (_F, "reads TFRecord files"),
    "FixedLengthRecordDataset": (_F, "reads files"),
    "FixedLengthRecordDatasetV2": (_F, "reads files"),
    "CSVDataset": (_F, "reads CSV files"),
    "CSVDatasetV2": (_F, "reads CSV files"),
    "ExperimentalCSVDataset": (_F, "reads CSV files"),
    "LMDBDataset": (_F, "reads LMDB databases"),
    "ExperimentalLMDBDataset": (_F, "reads LMDB databases"),
    "SqlDataset": (_F, "opens a SQLite database file"),
    "ExperimentalSqlDataset": (_F, "opens a SQLite database file"),
    "MatchingFilesDataset": (_F, "lists directories"),
    "ExperimentalMatchingFilesDataset": (_F, "lists directories"),
    "LoadDataset": (_F, "reads a saved dataset from a path"),
    "SaveDataset": (_F, "writes a dataset to a path"),
    "SaveDatasetV2": (_F, "writes a dataset to a path"),
    "DatasetToTFRecord": (_F, "writes a TFRecord file"),
    "ExperimentalDatasetToTFRecord": (_F, "writes a TFRecord file"),
    "SnapshotDataset": (_F, "writes and reads snapshot files"),
    "SnapshotDatasetV2": (_F, "writes and reads snapshot files"),
    "DistributedSave": (_F, "writes a dataset to a path"),
    "CacheDatasetV2": (_F, "caches to a file name given as input"),
    "CreateSummaryFileWriter": (_F, "writes event files to a log directory"),
    "CreateSummaryDbWriter": (_F, "writes a SQLite database"),
    "LoadAndRemapMatrix": (_F, "reads a checkpoint from a path"),
    "FileSystemSetConfiguration": (_F, "reconfigures a file system"),
    "Save": (_C, "writes tensors to a path"),
    "SaveSlices": (_C, "writes tensors to a path"),
    "SaveV2": (_C, "writes tensors to a path"),
    "Restore": (_C, "reads tensors from a path"),
    "RestoreSlice": (_C, "reads tensors from a path"),
    "RestoreV2": (_C, "reads tensors from a path"),
    "MergeV2Checkpoints": (_C, "moves and deletes checkpoint files"),
    "DataServiceDataset": (_N, "connects to a tf.data service address"),
    "DataServiceDatasetV2": (_N, "connects to a tf.data service address"),
    "DataServiceDatasetV3": (_N, "connects to a tf.data service address"),
    "DataServiceDatasetV4": (_N, "connects to a tf.data service address"),
    "RegisterDataset": (_N, "sends a dataset to a tf.data service address"),
    "RegisterDatasetV2": (_N, "sends a dataset to a tf.data service address"),
    "Rpc": (_N, "tf.contrib.rpc call to any address"),
    "TryRpc": (_N, "tf.contrib.rpc call to any address"),
    "RpcClient": (_N, "experimental RPC client"),
    "RpcCall": (_N, "experimental RPC call"),
    "RpcServer": (_N, "experimental RPC server (listens)"),
    "RpcServerStart": (_N, "experimental RPC server (listens)"),
    "PrintV2": (_O, "tf.print; flagged when output_stream is a file or URL"),
    "DebugIdentity": (_O, "tfdbg; flagged when debug_urls are set"),
    "DebugIdentityV2": (_O, "tfdbg v2; flagged when dump_root is set"),
    "DebugIdentityV3": (_O, "tfdbg; flagged when debug_urls are set"),
    "DebugNanCount": (_O, "tfdbg; flagged when debug_urls are set"),
    "DebugNumericSummary": (_O, "tfdbg; flagged when debug_urls are set"),
    "DebugNumericSummaryV2": (_O, "tfdbg v2; flagged when debug_urls are set"),
    "InitializeTableFromTextFile": (_A, "reads a vocabulary file (usually an asset)"),
    "InitializeTableFromTextFileV2": (_A, "reads a vocabulary file (usually an asset)"),
}
_OUTPUT_ATTRS: Final = ("output_stream", "debug_urls", "dump_root")
_HARMLESS_STREAMS: Final = frozenset(
    {"", "stderr", "stdout", "log(info)", "log(warning)", "log(error)"}
)
_SAVER_SCOPE: Final = re.compile(r"^save(_\d+)?/")
_SAVER_FUNCTION: Final = re.compile(r"_traced_(save|restore)(_\d+)?$|^__inference__traced_")
_DT_STRING: Final = 7
_MAX_STRINGS: Final = 4
_MAX_STRING_BYTES: Final = 256
_MAX_ATTR_DEPTH: Final = 16
_MAX_SHOWN: Final = 5
_DEADLINE_EVERY: Final = 4096


def looks_like_keras_metadata(head: bytes) -> bool:
    """``SavedMetadata``: repeated ``nodes`` (field 1) carrying ``_tf_keras_*`` identifiers."""
    return head[:1] == b"\x0a" and b"_tf_keras_" in head


def _looks_like_saved_model(head: bytes) -> bool:
    """Schema version 1 (field 1), then a ``MetaGraphDef`` (field 2) that starts plausibly.

    Version 1 is the only one TensorFlow writes; it also keeps ONNX (``ir_version`` >= 3 in
    field 1, then a producer string in field 2) from matching.
    """
    buf = memoryview(head)
    # The schema version is a proto3 scalar: a SavedModel built without setting it (0, which
    # TensorFlow's loader accepts) starts directly with its MetaGraphDef.
    start = 3 if head[:3] == b"\x08\x01\x12" else 1 if head[:1] == b"\x12" else 0
    if not start:
        return False
    try:
        length, pos = read_varint(buf, start)
        key, _ = read_varint(buf, pos)
    except ProtoError:
        return False
    if key >> 3 not in {1, 2, 3} or key & 7 != WireType.LEN:
        return False
    if start == 1 and pos + length <= len(head):
        # Without the version byte the evidence is thinner: a MetaGraphDef held entirely in
        # the probe must decode as protobuf fields to the byte.
        try:
            for _ in iter_fields(buf[pos : pos + length]):
                pass
        except ProtoError:
            return False
    return True


# FingerprintDef (core/protobuf/fingerprint.proto, TF >= 2.12): five uint64 hashes (fields
# 1-5), a VersionDef (6) and a UUID string (7). Written beside saved_model.pb.
_FINGERPRINT_FIELDS: Final[dict[int, WireType]] = {
    1: WireType.VARINT,
    2: WireType.VARINT,
    3: WireType.VARINT,
    4: WireType.VARINT,
    5: WireType.VARINT,
    6: WireType.LEN,
    7: WireType.LEN,
}
_MAX_FINGERPRINT: Final = 4096


def looks_like_fingerprint(head: bytes, size: int | None) -> bool:
    """``fingerprint.pb``: small, only the FingerprintDef fields, checksum first."""
    if size is None or size > _MAX_FINGERPRINT or len(head) != size or head[:1] != b"\x08":
        return False
    try:
        numbers = [
            f.number
            for f in iter_fields(memoryview(head))
            if _FINGERPRINT_FIELDS.get(f.number) is f.wire_type
        ]
        total = sum(1 for _ in iter_fields(memoryview(head)))
    except ProtoError:
        return False
    return total == len(numbers) and {1, 2, 3, 4, 5} <= set(numbers)


class SavedModelHandler(FormatHandler):
    """``saved_model.pb`` graphs and ``keras_metadata.pb`` configs, decoded without TF."""

    format: ClassVar[FileFormat] = FileFormat.TF_SAVEDMODEL
    needs_random_access: ClassVar[bool] = True

    def sniff(self, probe: Probe) -> bool:
        """A SavedModel or SavedMetadata protobuf, by its leading fields."""
        return (
            _looks_like_saved_model(probe.head)
            or looks_like_keras_metadata(probe.head)
            or looks_like_fingerprint(probe.head, probe.size)
        )

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Decode the protobuf and report risky ops or dangerous Keras configs."""
        with _view(source, ctx) as buf:
            if buf is None:
                return
            head = bytes(buf[:65536])
            if looks_like_fingerprint(head, len(buf)):
                return  # hashes only; sniffing already parsed every field
            if looks_like_keras_metadata(head):
                _scan_keras_metadata(buf, ctx)
            else:
                _GraphScan(ctx).scan_saved_model(buf)


@contextmanager
def _view(source: Source, ctx: ScanContext) -> Iterator[memoryview | None]:
    """Map a file region (RSS stays flat), else read bounded bytes into memory."""
    size = source.size or 0
    if isinstance(source, FileRegion) and size > 0:
        page = mmap.ALLOCATIONGRANULARITY
        start = source.offset - source.offset % page
        fd = os.open(source.path, os.O_RDONLY)
        try:
            mapped = mmap.mmap(
                fd, size + source.offset - start, offset=start, access=mmap.ACCESS_READ
            )
        finally:
            os.close(fd)
        view = memoryview(mapped)[source.offset - start :]
        try:
            yield view
        finally:
            view.release()
            mapped.close()
        return
    if isinstance(source, BytesSource):
        yield memoryview(source.data)
        return
    limit = ctx.limits.max_header_bytes
    with source.open() as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        ctx.report(
            "MAM-TF-005", f"protobuf larger than {limit} bytes read into memory; not analysed"
        )
        yield None
        return
    yield memoryview(data)


def _scan_keras_metadata(buf: memoryview, ctx: ScanContext) -> None:
    try:
        for node in iter_fields(buf):
            if node.number != 1:
                continue
            path, metadata = "?", None
            for f in iter_fields(node.data, node.payload):
                if f.number == 3:  # noqa: PLR2004 - SavedObject.node_path
                    path = f.text(512)
                elif f.number == 5:  # noqa: PLR2004 - SavedObject.metadata
                    metadata = bytes(f.data)
            if metadata:
                report_keras_json(
                    metadata, ctx, ignores_safe_mode=True, what=f"keras_metadata node {path}"
                )
    except ProtoError as exc:
        ctx.report("MAM-TF-005", f"keras_metadata.pb is malformed: {exc}")


@dataclass(slots=True)
class _Node:
    name: str = ""
    op: str = ""
    inputs: list[str] = field(default_factory=list)
    strings: dict[str, list[str]] = field(default_factory=dict)


@dataclass(slots=True)
class _Hit:
    risk: OpRisk
    where: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    count: int = 0


class _GraphScan:
    def __init__(self, ctx: ScanContext) -> None:
        self.ctx = ctx
        self.hits: dict[str, _Hit] = {}
        self.visited = 0
        self.saver_prefixes: set[str] = set()

    def scan_saved_model(self, buf: memoryview) -> None:
        try:
            graphs = 0
            for f in iter_fields(buf):
                if f.number == 2:  # noqa: PLR2004 - SavedModel.meta_graphs
                    graphs += 1
                    self._meta_graph(f)
            if graphs == 0:
                self.ctx.report("MAM-TF-005", "SavedModel has no meta graph")
        except ProtoError as exc:
            self.ctx.report("MAM-TF-005", f"saved_model.pb is malformed: {exc}")
        self._emit()

    def _meta_graph(self, meta: Field) -> None:
        graph: Field | None = None
        for f in iter_fields(meta.data, meta.payload):
            if f.number == 2:  # noqa: PLR2004 - MetaGraphDef.graph_def
                graph = f
            elif f.number == 3:  # noqa: PLR2004 - MetaGraphDef.saver_def
                self._saver_def(f)
        if graph is not None:
            self._graph(graph)

    def _saver_def(self, saver: Field) -> None:
        for f in iter_fields(saver.data, saver.payload):
            if f.number in {1, 2, 3} and f.wire_type is WireType.LEN:  # tensor/op names
                name = f.text(512)
                if "/" in name:
                    self.saver_prefixes.add(name.split("/", 1)[0] + "/")

    def _graph(self, graph: Field) -> None:
        nodes: list[_Node] = []
        for f in iter_fields(graph.data, graph.payload):
            if f.number == 1:  # GraphDef.node
                nodes.append(self._node(f))
            elif f.number == 2:  # noqa: PLR2004 - GraphDef.library
                for fn in iter_fields(f.data, f.payload):
                    if fn.number == 1:  # FunctionDefLibrary.function
                        self._function(fn)
        self._check_scope("graph", nodes, saver_function=False)

    def _function(self, fn: Field) -> None:
        name = "?"
        nodes: list[_Node] = []
        for f in iter_fields(fn.data, fn.payload):
            if f.number == 1:  # FunctionDef.signature (OpDef.name = 1)
                for sig in iter_fields(f.data, f.payload):
                    if sig.number == 1:
                        name = sig.text(512)
            elif f.number == 3:  # noqa: PLR2004 - FunctionDef.node_def
                nodes.append(self._node(f))
        self._check_scope(
            f"function {name}", nodes, saver_function=bool(_SAVER_FUNCTION.search(name))
        )

    def _node(self, nd: Field) -> _Node:
        self.visited += 1
        if self.visited % _DEADLINE_EVERY == 0:
            self.ctx.check_deadline()
        node = _Node()
        for f in iter_fields(nd.data, nd.payload):
            if f.number == 1:
                node.name = f.text(1024)
            elif f.number == 2:  # noqa: PLR2004 - NodeDef.op
                node.op = f.text(256)
            elif f.number == 3:  # noqa: PLR2004 - NodeDef.input
                node.inputs.append(f.text(1024))
            elif f.number == 5:  # noqa: PLR2004 - NodeDef.attr
                key, strings = _attr_entry(f)
                if strings:
                    node.strings[key] = strings
        return node

    def _check_scope(self, scope: str, nodes: list[_Node], *, saver_function: bool) -> None:
        consts = {n.name: n.strings.get("value", []) for n in nodes if n.op == "Const"}
        for node in nodes:
            entry = RISKY_OPS.get(node.op)
            if entry is None:
                continue
            risk = entry[0]
            evidence: list[str] = []
            if risk is OpRisk.CHECKPOINT and (saver_function or self._in_saver(node.name)):
                continue
            if risk is OpRisk.OUTPUT:
                targets = [
                    s
                    for key in _OUTPUT_ATTRS
                    for s in node.strings.get(key, [])
                    if s not in _HARMLESS_STREAMS
                ]
                if not targets:
                    continue
                evidence.extend(targets)
            evidence.extend(node.strings.get("memory_region_name", []))  # ImmutableConst
            for source in node.inputs:
                producer = source.lstrip("^").split(":", 1)[0]
                evidence.extend(consts.get(producer, []))
            hit = self.hits.setdefault(node.op, _Hit(risk))
            hit.count += 1
            if len(hit.where) < _MAX_SHOWN:
                hit.where.append(f"{scope}: {node.name}")
            for item in evidence:
                if item not in hit.evidence and len(hit.evidence) < _MAX_SHOWN:
                    hit.evidence.append(item)

    def _in_saver(self, name: str) -> bool:
        if _SAVER_SCOPE.match(name):
            return True
        return any(name.startswith(p) for p in self.saver_prefixes)

    def _emit(self) -> None:
        for op, hit in sorted(self.hits.items()):
            why = RISKY_OPS[op][1]
            where = "; ".join(hit.where)
            more = f" (+{hit.count - len(hit.where)} more)" if hit.count > len(hit.where) else ""
            extra = " outside the saver subgraph" if hit.risk is OpRisk.CHECKPOINT else ""
            evidence = f"{op} at {where}{more}"
            if hit.evidence:
                evidence += "; arguments: " + ", ".join(repr(e) for e in hit.evidence)
            self.ctx.report(
                _RULE[hit.risk],
                f"{hit.count} {op} op(s){extra} ({hit.risk.value}: {why})",
                evidence=evidence,
            )


def _attr_entry(entry: Field) -> tuple[str, list[str]]:
    """One ``map<string, AttrValue>`` entry (key = 1, value = 2): its key and short strings."""
    key, value = "", None
    for f in iter_fields(entry.data, entry.payload):
        if f.number == 1:
            key = f.text(256)
        elif f.number == 2:  # noqa: PLR2004 - map entry value
            value = f
    return key, ([] if value is None else _attr_strings(value, 0))


def _attr_strings(value: Field, depth: int) -> list[str]:
    """Short strings in an ``AttrValue``: ``s``, ``list.s`` and string ``tensor`` values."""
    if depth > _MAX_ATTR_DEPTH:
        msg = "attribute values nest too deeply"
        raise ProtoError(msg)
    out: list[str] = []
    for f in iter_fields(value.data, value.payload):
        if f.number == 2 and f.wire_type is WireType.LEN:  # noqa: PLR2004 - AttrValue.s
            out.append(f.text(_MAX_STRING_BYTES))
        elif f.number == 1 and f.wire_type is WireType.LEN:  # AttrValue.list
            out.extend(
                item.text(_MAX_STRING_BYTES)
                for item in iter_fields(f.data, f.payload)
                if item.number == 2 and item.wire_type is WireType.LEN  # noqa: PLR2004
            )
        elif f.number == 8 and f.wire_type is WireType.LEN:  # noqa: PLR2004 - AttrValue.tensor
            out.extend(_tensor_strings(f))
        if len(out) >= _MAX_STRINGS:
            break
    return out[:_MAX_STRINGS]


def _tensor_strings(tensor: Field) -> list[str]:
    dtype = 0
    values: list[str] = []
    for f in iter_fields(tensor.data, tensor.payload):
        if f.number == 1 and f.wire_type is WireType.VARINT:  # TensorProto.dtype
            dtype = f.number_value
        elif f.number == 8 and f.wire_type is WireType.LEN and len(values) < _MAX_STRINGS:  # noqa: PLR2004 - string_val
            values.append(f.text(_MAX_STRING_BYTES))
    return values if dtype in {0, _DT_STRING} else []
