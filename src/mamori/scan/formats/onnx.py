"""ONNX models: protobuf structure, external data paths, custom operators, tensor sizes.

The model is parsed with the real ``onnx.ModelProto`` (protobuf only: no operator, no custom
library and no external data is loaded), after :mod:`mamori.scan._internal.onnx_wire` has
dropped the tensor bytes so memory stays bounded. What can go wrong in an ONNX file:

* ``external_data`` locations that leave the model directory (absolute, ``..``, symlinks):
  loading reads arbitrary files (CVE-2022-25882, CVE-2024-27318 in onnx itself).
* operators from custom domains, which only run with a native custom-op library;
* nested graphs (If/Loop/Scan) deep enough to exhaust a loader's stack;
* tensors whose dims disagree with their data, or that declare absurd sizes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Final

from mamori.findings import FileFormat
from mamori.scan._internal.onnx_wire import StrippedModel, WireError, WireLimit, strip_model
from mamori.scan._internal.source import FileRegion, Source
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext

if TYPE_CHECKING:
    # onnx pulls in numpy and protobuf (~0.4 s): imported in scan() only, so that start-up
    # and every scan of another format do not pay for it.
    from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto

__all__ = ["OnnxHandler"]

PROTOBUF_LIMIT: Final = (1 << 31) - 1
"""Protobuf refuses to parse messages of 2 GiB or more; onnx.load fails on such files."""
_MAX_NESTING: Final = 32
"""Subgraph nesting (If/Loop/Scan) allowed; each level is three protobuf message levels."""
_MAX_MESSAGE_DEPTH: Final = 100
"""Protobuf's default recursion limit: deeper models cannot be parsed by onnx.load either."""
_MAX_ELEMENTS: Final = 1 << 48
_MAX_REPORTED: Final = 20

# Operator domains whose kernels ship with ONNX and every runtime.
_STANDARD_DOMAINS: Final = frozenset(
    {
        "",  # default ai.onnx
        "ai.onnx",  # explicit name of the default domain
        "ai.onnx.ml",  # traditional ML operators
        "ai.onnx.preview",  # preview operators defined by onnx itself
        "ai.onnx.preview.training",  # training operators defined by onnx itself
        "ai.onnx.training",  # training operators defined by onnx itself
    }
)
# ONNX Runtime's contrib operators: compiled into onnxruntime, not loaded from a user library,
# so they are informational (the model needs ORT, not foreign native code).
_ORT_DOMAINS: Final = frozenset(
    {
        "com.microsoft",  # ORT contrib ops (Attention, QuickGelu, ...)
        "com.microsoft.nchwc",  # ORT layout-optimised kernels
        "com.microsoft.experimental",  # ORT experimental contrib ops
        "com.ms.internal.nhwc",  # ORT internal NHWC ops written by its optimiser
    }
)
# Bits per element of each TensorProto.DataType that raw_data can hold (onnx.proto).
_BITS: Final[dict[int, int]] = {
    1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64,
    14: 64, 15: 128, 16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 8, 25: 2,
    26: 2, 27: 6, 28: 6,
}  # fmt: skip
_STRING: Final = 8
_EXTERNAL: Final = 1  # TensorProto.DataLocation.EXTERNAL
# The typed field that may hold each data type instead of raw_data, and how many elements
# one entry carries (negative: entries per element, for complex numbers) (onnx.proto).
_TYPED_FIELDS: Final = ("float_data", "int32_data", "string_data", "int64_data", "double_data",
                        "uint64_data")  # fmt: skip
_TYPED: Final[dict[int, tuple[str, int]]] = {
    1: ("float_data", 1), 14: ("float_data", -2),
    2: ("int32_data", 1), 3: ("int32_data", 1), 4: ("int32_data", 1), 5: ("int32_data", 1),
    6: ("int32_data", 1), 9: ("int32_data", 1), 10: ("int32_data", 1), 16: ("int32_data", 1),
    17: ("int32_data", 1), 18: ("int32_data", 1), 19: ("int32_data", 1), 20: ("int32_data", 1),
    24: ("int32_data", 1), 27: ("int32_data", 1), 28: ("int32_data", 1),
    21: ("int32_data", 2), 22: ("int32_data", 2), 23: ("int32_data", 2),
    25: ("int32_data", 4), 26: ("int32_data", 4),
    8: ("string_data", 1), 7: ("int64_data", 1),
    11: ("double_data", 1), 15: ("double_data", -2),
    12: ("uint64_data", 1), 13: ("uint64_data", 1),
}  # fmt: skip
# ModelProto fields and their wire types, used to recognise the file by its first fields.
_MODEL_FIELDS: Final[dict[int, int]] = {
    1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2,
}  # fmt: skip


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            return None
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    return None


# GraphProto fields, all length-delimited: node, name, initializer, doc_string, input, output,
# value_info, quantization_annotation, sparse_initializer, metadata_props.
_GRAPH_FIRST_TAGS: Final = frozenset({0x0A, 0x12, 0x2A, 0x52, 0x5A, 0x62, 0x6A, 0x72, 0x7A, 0x82})


def _graph_start_plausible(head: bytes, length: tuple[int, int]) -> bool:
    """A non-empty graph whose first byte, when in the probe, is a GraphProto field tag."""
    size, start = length
    if size == 0:
        return False
    return start >= len(head) or head[start] in _GRAPH_FIRST_TAGS


class OnnxHandler(FormatHandler):
    """ONNX ModelProto, recognised by its leading fields and checked without loading."""

    format = FileFormat.ONNX
    needs_random_access = True

    def sniff(self, probe: Probe) -> bool:  # noqa: C901, PLR0911 - a small wire-format walk
        """``ir_version`` first, then only ModelProto fields, up to and including ``graph``."""
        head = probe.head
        size = probe.size if probe.size is not None else 1 << 62
        if head[:1] != b"\x08":
            return False
        parsed = _varint(head, 1)
        # IR version 3 (ONNX 1.0, 2017) is the oldest released one; requiring it also keeps
        # TensorFlow protobufs, which start with schema version 1, from matching.
        if parsed is None or not 3 <= parsed[0] <= 100:  # noqa: PLR2004 - IR versions are small
            return False
        pos = parsed[1]
        while pos < len(head):
            tag = _varint(head, pos)
            if tag is None:
                return False
            number, wire = tag[0] >> 3, tag[0] & 7
            if _MODEL_FIELDS.get(number) != wire:
                return False
            pos = tag[1]
            value = _varint(head, pos)
            if value is None:
                return False
            if wire == 0:
                pos = value[1]
                continue
            if number == 7:  # noqa: PLR2004 - graph: this is a model (maybe truncated ones)
                return _graph_start_plausible(head, value)
            end = value[1] + value[0]
            if end > size:
                return False
            if number in {2, 3, 4} and end <= len(head):
                try:
                    head[value[1] : end].decode("utf-8")
                except UnicodeDecodeError:
                    return False
            pos = end
        return False

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Strip tensor bytes, parse the rest with onnx's protobuf classes, then check it."""
        assert source.size is not None  # needs_random_access: the engine provides a size
        if source.size > PROTOBUF_LIMIT:
            ctx.report(
                "MAM-ONNX-007",
                f"model of {source.size} bytes exceeds protobuf's 2 GiB limit",
                evidence=str(source.size),
            )
        with source.open() as stream:
            try:
                stripped = strip_model(
                    stream,
                    source.size,
                    max_kept=ctx.limits.max_header_bytes,
                    max_depth=_MAX_MESSAGE_DEPTH,
                    tick=ctx.check_deadline,
                )
            except WireError as exc:
                ctx.report("MAM-ONNX-001", f"invalid protobuf: {exc.message}", offset=exc.offset)
                return
            except WireLimit as exc:
                rule_id = "MAM-ONNX-008" if exc.kind == "depth" else "MAM-ONNX-007"
                ctx.report(rule_id, exc.message, offset=exc.offset)
                return
        from google.protobuf.message import DecodeError  # type: ignore[import-untyped]  # noqa: PLC0415 -- no stubs (types-protobuf is not a dependency); lazy: heavy
        from onnx import ModelProto  # noqa: PLC0415 -- lazy: onnx imports numpy (start-up time)

        model = ModelProto()
        try:
            model.ParseFromString(stripped.data)
        except (DecodeError, RecursionError) as exc:
            ctx.report("MAM-ONNX-001", f"protobuf parser rejected the model: {exc}")
            return
        _Checker(ctx, stripped, _base_dir(source)).run(model)


def _base_dir(source: Source) -> Path | None:
    """The model's directory when ``source`` is a whole file on disk, else None."""
    if not isinstance(source, FileRegion) or source.offset != 0:
        return None
    try:
        if os.stat(source.path).st_size != source.size:
            return None
    except OSError:
        return None
    return Path(source.path).parent


@dataclass(frozen=True, slots=True)
class _Graph:
    graph: GraphProto
    depth: int
    where: str


class _Checker:
    def __init__(self, ctx: ScanContext, stripped: StrippedModel, base: Path | None) -> None:
        self.ctx = ctx
        self.stripped = stripped
        self.base = base
        self.counts: dict[str, int] = {}
        self.external_without_base = 0

    def report(self, rule_id: str, message: str, evidence: str | None = None) -> None:
        n = self.counts.get(rule_id, 0) + 1
        self.counts[rule_id] = n
        if n <= _MAX_REPORTED:
            self.ctx.report(rule_id, message, evidence=evidence)

    def run(self, model: ModelProto) -> None:
        local_ops = {(f.domain, f.name) for f in model.functions}
        roots = self._roots(model, local_ops)
        for item in self._graphs(roots):
            self.ctx.check_deadline()
            for tensor in item.graph.initializer:
                self._tensor(tensor, f"{item.where} initializer {tensor.name!r}")
            for sparse in item.graph.sparse_initializer:
                self._tensor(sparse.values, f"{item.where} sparse initializer values")
                self._tensor(sparse.indices, f"{item.where} sparse initializer indices")
            for node in item.graph.node:
                self._node(node, local_ops, item.where, item.depth, roots)
        if self.external_without_base:
            self.report(
                "MAM-ONNX-003",
                f"{self.external_without_base} tensors keep their data in external files that "
                "are not part of what was scanned",
            )

    def _roots(self, model: ModelProto, local_ops: set[tuple[str, str]]) -> list[_Graph]:
        """The top-level graphs; function bodies are checked on the way."""
        if not model.opset_import:
            # Required since IR version 3 (onnx.checker): without it no operator has meaning.
            self.report("MAM-ONNX-001", "model declares no opset_import")
        roots: list[_Graph] = []
        if model.HasField("graph"):
            roots.append(_Graph(model.graph, 0, "graph"))
        else:
            self.report("MAM-ONNX-001", "model has no graph")
        for i, info in enumerate(model.training_info):
            roots.append(_Graph(info.initialization, 0, f"training_info[{i}].initialization"))
            roots.append(_Graph(info.algorithm, 0, f"training_info[{i}].algorithm"))
        for function in model.functions:
            for node in function.node:
                self._node(node, local_ops, f"function {function.name}", 0, roots)
            for attr in function.attribute_proto:
                self._attribute(attr, f"function {function.name}", 0, roots)
        return roots

    def _graphs(self, pending: list[_Graph]) -> Iterator[_Graph]:
        # `pending` grows while nodes are visited (subgraph attributes), so walk it as a queue.
        index = 0
        while index < len(pending):
            yield pending[index]
            index += 1

    def _node(
        self,
        node: NodeProto,
        local_ops: set[tuple[str, str]],
        where: str,
        depth: int,
        pending: list[_Graph],
    ) -> None:
        domain = node.domain
        if domain in _ORT_DOMAINS:
            self.report(
                "MAM-ONNX-005", f"{where}: node {node.op_type!r} from {domain}", evidence=domain
            )
        elif domain not in _STANDARD_DOMAINS and (domain, node.op_type) not in local_ops:
            self.report(
                "MAM-ONNX-004",
                f"{where}: node {node.op_type!r} uses custom operator domain {domain!r}",
                evidence=f"{domain}::{node.op_type}",
            )
        for attr in node.attribute:
            self._attribute(attr, f"{where} node {node.name or node.op_type!r}", depth, pending)

    def _attribute(
        self, attr: AttributeProto, where: str, depth: int, pending: list[_Graph]
    ) -> None:
        subgraphs = ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
        for graph in subgraphs:
            if depth + 1 > _MAX_NESTING:
                self.report("MAM-ONNX-008", f"{where}: subgraphs nest deeper than {_MAX_NESTING}")
                return
            pending.append(_Graph(graph, depth + 1, f"{where}.{attr.name}"))
        tensors = ([attr.t] if attr.HasField("t") else []) + list(attr.tensors)
        for sparse in [attr.sparse_tensor] if attr.HasField("sparse_tensor") else []:
            tensors += [sparse.values, sparse.indices]
        for sparse in attr.sparse_tensors:
            tensors += [sparse.values, sparse.indices]
        for tensor in tensors:
            self._tensor(tensor, f"{where} attribute {attr.name!r}")

    def _tensor(self, tensor: TensorProto, where: str) -> None:
        dims = list(tensor.dims)
        if any(d < 0 for d in dims):
            self.report("MAM-ONNX-006", f"{where}: negative dimension in {dims}")
            return
        elements = 1
        for d in dims:
            elements *= d
        if elements > _MAX_ELEMENTS:
            self.report("MAM-ONNX-006", f"{where}: declares {elements} elements")
            return
        dtype = tensor.data_type
        if dtype not in _BITS and dtype != _STRING:
            self.report("MAM-ONNX-006", f"{where}: unknown data type {dtype}", str(dtype))
            return
        expected = None if dtype == _STRING else -(-elements * _BITS[dtype] // 8)
        if tensor.data_location == _EXTERNAL:
            self._external(tensor, where, expected)
        elif tensor.HasField("raw_data"):
            actual = self.stripped.raw_length(tensor.raw_data)
            if expected is None:
                self.report("MAM-ONNX-006", f"{where}: string tensor with raw_data")
            elif actual != expected:
                self.report(
                    "MAM-ONNX-006",
                    f"{where}: dims {dims} need {expected} bytes but raw_data has {actual}",
                )
            elif any(len(getattr(tensor, name)) for name in _TYPED_FIELDS):
                self.report("MAM-ONNX-006", f"{where}: both raw_data and typed values")
        else:
            self._typed(tensor, where, dtype, elements)

    def _typed(self, tensor: TensorProto, where: str, dtype: int, elements: int) -> None:
        """Values in the typed ``*_data`` fields: the right field, as many as dims say."""
        present = [name for name in _TYPED_FIELDS if len(getattr(tensor, name))]
        if not present:
            return  # no values at all: a shape-only tensor (type info, empty initializer)
        field, per = _TYPED[dtype]
        if present != [field]:
            self.report(
                "MAM-ONNX-006", f"{where}: data type {dtype} stored in {', '.join(present)}"
            )
            return
        needed = elements * -per if per < 0 else -(-elements // per)
        actual = len(getattr(tensor, field))
        if actual != needed:
            self.report(
                "MAM-ONNX-006",
                f"{where}: dims {list(tensor.dims)} need {needed} {field} values, found {actual}",
            )

    def _external(self, tensor: TensorProto, where: str, expected: int | None) -> None:
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location")
        if not location:
            self.report("MAM-ONNX-001", f"{where}: external data without a location")
            return
        if not _location_is_plain(location):
            self.report(
                "MAM-ONNX-002",
                f"{where}: external data location {location!r} leaves the model directory",
                location,
            )
            return
        length = info.get("length")
        if (
            length is not None
            and expected is not None
            and (not length.isdigit() or int(length) != expected)
        ):
            self.report(
                "MAM-ONNX-006",
                f"{where}: external length {length!r} but dims need {expected} bytes",
            )
        if self.base is None:
            self.external_without_base += 1
            return
        try:
            base = self.base.resolve()
            target = (self.base / location).resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop on Python 3.11
            self.report(
                "MAM-ONNX-002",
                f"{where}: external data {location!r} cannot be resolved: {exc}",
                location,
            )
            return
        if not target.is_relative_to(base):
            self.report(
                "MAM-ONNX-002",
                f"{where}: external data {location!r} resolves outside the model directory "
                f"to {target}",
                location,
            )


def _location_is_plain(location: str) -> bool:
    """A relative path without '..', NUL, drive or root, in POSIX and in Windows reading."""
    if "\x00" in location:
        return False
    for pure in (PurePosixPath(location), PureWindowsPath(location)):
        if pure.is_absolute() or pure.anchor or ".." in pure.parts:
            return False
    return True
