"""safetensors: strict validation of the JSON header; tensor data is never read.

Layout (https://github.com/huggingface/safetensors#format): an 8-byte little-endian header
length ``N``, ``N`` bytes of UTF-8 JSON, then the tensor data. The format cannot carry code, so
the risks are parser differentials and resource exhaustion: a header that one reader accepts
and another reads differently (duplicate keys, overlapping offsets, trailing bytes that hide a
second payload), or one that makes a reader allocate or seek wildly. We are stricter than the
official Rust reader: anything the spec does not allow is a finding.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Final

from mamori.findings import FileFormat, Severity
from mamori.scan._internal.source import Source
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext

__all__ = ["SafetensorsHandler"]

# The official reader refuses headers above 100,000,000 bytes (MAX_HEADER_SIZE in
# safetensors/src/tensor.rs); anything larger is not a loadable safetensors file.
OFFICIAL_MAX_HEADER: Final = 100_000_000

# Bits per element of every dtype the official reader accepts (safetensors 0.8 `Dtype` enum).
# Sub-byte dtypes (F4, F6_*) must still end on a byte boundary.
_DTYPE_BITS: Final[dict[str, int]] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}
_ENTRY_KEYS: Final = frozenset({"dtype", "shape", "data_offsets"})
_U64_MAX: Final = (1 << 64) - 1
_JSON_WS: Final = b" \t\r\n"
_MAX_REPORTED: Final = 20
"""Per-rule cap on findings for one file; a hostile header can have millions of entries."""


class _HeaderError(Exception):
    """The header is not valid JSON of the expected shape (one finding, scan stops)."""

    def __init__(self, rule_id: str, message: str, evidence: str | None = None) -> None:
        super().__init__(message)
        self.rule_id = rule_id
        self.message = message
        self.evidence = evidence


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    begin: int
    end: int


def _reject_constant(token: str) -> Any:
    # Python's json accepts NaN/Infinity; the JSON spec and serde_json do not.
    raise _HeaderError("MAM-ST-001", f"non-standard JSON constant {token}", token)


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)  # C speed; headers can hold a million entries
    if len(out) == len(pairs):
        return out
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            # Readers disagree on duplicates (first wins, last wins, or error): a classic
            # differential to show one tensor to the scanner and another to the loader.
            raise _HeaderError("MAM-ST-007", f"duplicate JSON key {key!r} in header", key)
        seen.add(key)
    raise AssertionError  # pragma: no cover - len(dict) < len(pairs) implies a duplicate


class SafetensorsHandler(FormatHandler):
    """Validates the safetensors header against the spec and the file size."""

    format = FileFormat.SAFETENSORS
    needs_random_access = False

    def sniff(self, probe: Probe) -> bool:
        """Plausible header length, then a JSON object opening at byte 8."""
        head = probe.head
        if len(head) < 10:  # noqa: PLR2004 - 8 length bytes and at least "{}"
            return False
        (n,) = struct.unpack_from("<Q", head)
        if n < 2 or n > OFFICIAL_MAX_HEADER:  # noqa: PLR2004 - "{}" is the smallest header
            return False
        if probe.size is not None and n > probe.size - 8:
            return False
        body = head[8 : 8 + min(n, 64)].lstrip(_JSON_WS)
        return body[:1] == b"{" and body[1:].lstrip(_JSON_WS)[:1] in {b'"', b"}"}

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Read only the header; check it, then check offsets against the file size."""
        with source.open() as stream:
            prefix = stream.read(8)
            if len(prefix) < 8:  # noqa: PLR2004 - the length field
                ctx.report("MAM-ST-001", "file shorter than the 8-byte header length", offset=0)
                return
            (n,) = struct.unpack("<Q", prefix)
            limit = min(ctx.limits.max_header_bytes, OFFICIAL_MAX_HEADER)
            if n > limit:
                ctx.report(
                    "MAM-ST-006",
                    f"header length {n} exceeds the limit of {limit} bytes",
                    offset=0,
                    evidence=str(n),
                )
                return
            raw = stream.read(n)
            if len(raw) < n:
                ctx.report(
                    "MAM-ST-001",
                    f"header length {n} runs past the end of the file",
                    offset=0,
                    evidence=str(n),
                )
                return
            data_size = source.size - 8 - n if source.size is not None else None
            if data_size is None:
                # One-shot stream of unknown length: count the rest without keeping it.
                data_size = 0
                while chunk := stream.read(1 << 20):
                    data_size += len(chunk)
                    ctx.check_deadline()
        try:
            header = _parse_header(raw, ctx)
        except _HeaderError as exc:
            ctx.report(exc.rule_id, exc.message, offset=8, evidence=exc.evidence)
            return
        entries = _check_entries(header, ctx)
        _check_layout(entries, data_size, n, ctx)


def _parse_header(raw: bytes, ctx: ScanContext) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _HeaderError("MAM-ST-001", f"header is not UTF-8 ({exc.reason})") from exc
    body = text.lstrip(" \t\r\n")
    if not body.startswith("{"):
        raise _HeaderError("MAM-ST-001", "header is not a JSON object", text[:40])
    if body is not text:
        ctx.report(
            "MAM-ST-001",
            "header has whitespace before '{'; the spec requires it to start with '{'",
            offset=8,
            severity=Severity.MEDIUM,
        )
    decoder = json.JSONDecoder(object_pairs_hook=_pairs_hook, parse_constant=_reject_constant)
    try:
        value, end = decoder.raw_decode(body)
    except json.JSONDecodeError as exc:
        raise _HeaderError("MAM-ST-001", f"header is not valid JSON: {exc.msg}") from exc
    except RecursionError as exc:
        raise _HeaderError("MAM-ST-001", "header JSON is nested too deeply") from exc
    rest = body[end:]
    if rest.strip(" "):
        if rest.strip(" \t\r\n"):
            raise _HeaderError("MAM-ST-001", "data after the JSON header object", rest[:40])
        # The spec allows only 0x20 padding; other whitespace is accepted by serde_json, so
        # this is a spec deviation, not a differential.
        ctx.report(
            "MAM-ST-001",
            "header padded with whitespace other than spaces",
            offset=8,
            severity=Severity.LOW,
        )
    assert isinstance(value, dict)  # body starts with "{" and decoded without error
    return value


def _check_entries(header: dict[str, Any], ctx: ScanContext) -> list[_Entry]:
    entries: list[_Entry] = []
    bad = 0
    for name, spec in header.items():
        if _has_surrogate(name):
            # Python keeps lone surrogates from "\ud800" escapes; serde_json rejects them.
            ctx.report("MAM-ST-001", "key with an unpaired UTF-16 surrogate", offset=8)
        if name == "__metadata__":
            _check_metadata(spec, ctx)
            continue
        problem, entry = _entry(name, spec)
        if problem is not None:
            bad += 1
            if bad <= _MAX_REPORTED:
                ctx.report("MAM-ST-002", f"tensor {name!r}: {problem}", offset=8, evidence=name)
            continue
        assert entry is not None
        entries.append(entry)
    if bad > _MAX_REPORTED:
        ctx.report("MAM-ST-002", f"{bad} malformed tensor entries in total", offset=8)
    return entries


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_metadata(spec: Any, ctx: ScanContext) -> None:
    if not isinstance(spec, dict):
        ctx.report("MAM-ST-005", "__metadata__ is not a JSON object", offset=8)
        return
    for key, value in spec.items():
        if not isinstance(value, str):
            ctx.report(
                "MAM-ST-005",
                f"__metadata__ value for {key!r} is {type(value).__name__}, not a string",
                offset=8,
                evidence=key,
            )
            return
        if _has_surrogate(key) or _has_surrogate(value):
            ctx.report("MAM-ST-005", "__metadata__ holds an unpaired surrogate", offset=8)
            return


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _U64_MAX


def _entry(name: str, spec: Any) -> tuple[str | None, _Entry | None]:  # noqa: PLR0911 - one return per rule of the spec
    if not isinstance(spec, dict):
        return "entry is not a JSON object", None
    if set(spec) != _ENTRY_KEYS:
        extra = sorted(set(spec) ^ _ENTRY_KEYS)
        return f"entry keys differ from dtype/shape/data_offsets: {extra}", None
    dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _DTYPE_BITS:
        return f"unknown dtype {dtype!r}", None
    if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
        return "shape is not a list of non-negative integers", None
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2  # noqa: PLR2004 - [begin, end]
        or not all(_is_uint(o) for o in offsets)
    ):
        return "data_offsets is not [begin, end] of non-negative integers", None
    begin, end = offsets
    if end < begin:
        return f"data_offsets end {end} before begin {begin}", None
    bits = math.prod(shape) * _DTYPE_BITS[dtype]
    if bits > _U64_MAX:
        return "element count times dtype size overflows 64 bits", None
    if bits % 8:
        return "sub-byte tensor does not end on a byte boundary", None
    if bits // 8 != end - begin:
        return (
            f"shape {shape} of {dtype} needs {bits // 8} bytes but data_offsets span {end - begin}",
            None,
        )
    return None, _Entry(name, begin, end)


def _check_layout(entries: list[_Entry], data_size: int, n: int, ctx: ScanContext) -> None:
    """Offsets must tile ``[0, data_size)`` exactly, as the official reader requires."""
    position = 0
    reported = 0
    for entry in sorted(entries, key=lambda e: (e.begin, e.end)):
        problem = None
        if entry.end > data_size:
            problem = f"ends at {entry.end}, past the {data_size} bytes of tensor data"
        elif entry.begin < position:
            problem = f"overlaps the previous tensor (begins at {entry.begin} < {position})"
        elif entry.begin > position:
            problem = f"leaves a gap of {entry.begin - position} bytes before it"
        if problem is not None:
            reported += 1
            if reported <= _MAX_REPORTED:
                ctx.report(
                    "MAM-ST-003",
                    f"tensor {entry.name!r} {problem}",
                    offset=8 + n + entry.begin,
                    evidence=entry.name,
                )
        position = max(position, entry.end)
    if position < data_size:
        ctx.report(
            "MAM-ST-004",
            f"{data_size - position} bytes after the last tensor are not described by the header",
            offset=8 + n + position,
            evidence=str(data_size - position),
        )
