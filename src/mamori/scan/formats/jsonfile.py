"""JSON files that ride along with models: templates, remote-code hooks, Keras architectures.

Recognised by content whatever the layout: any JSON whitespace, a UTF-8/16/32 byte-order mark
or none (``json.detect_encoding``), compact or pretty-printed, one document or JSON Lines.
Three things in a JSON document make a loader run code, and each is checked:

* Jinja templates, which servers render (template injection, CVE-2024-34359). Every string
  value that parses as a template with a statement or an expression is checked, under any
  key: ``chat_template`` in both its string and its named-list form, ``custom_chat_template``,
  a template hidden under an unrelated key, or the value a duplicate key shadows.
* ``auto_map`` and ``custom_pipelines``, which make ``transformers`` import repository code
  under ``trust_remote_code``: ``auto_map`` in its dict form (``config.json``) and in the older
  list form (``["tokenization_x.Tok", null]`` in ``tokenizer_config.json``), at any depth.
* Keras objects (``{"class_name": ..., "config": ...}``): ``keras.saving.load_model`` accepts
  a folder holding ``config.json`` and a ``.keras`` zip holding only ``config.json``
  (``saving_lib._load_model_from_dir``/``_from_fileobj``), and ``deserialize_keras_object``
  rebuilds such dicts at any depth, so a document holding one gets the Keras checks.

Everything else is inert data.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Final

from mamori.findings import FileFormat
from mamori.scan._internal.source import Source
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext

__all__ = ["JsonHandler", "decode_json_text", "looks_like_json"]

_JSON_SPACE: Final = " \t\r\n"
_VALUE_STARTS: Final = frozenset('{["-0123456789tfn]')
_SNIFF_BYTES: Final = 4096
_MAX_VALUES: Final = 5_000_000
_MAX_REPORTED_DUPLICATES: Final = 20
_MAX_SHOWN_TARGETS: Final = 5
# Keys whose "module.Class" values transformers imports from the repository under
# trust_remote_code: auto_map (AutoConfig/AutoModel/AutoTokenizer/AutoProcessor) and
# custom_pipelines (pipeline(): config.custom_pipelines[task]["impl"]).
_REMOTE_CODE_KEYS: Final = ("auto_map", "custom_pipelines")


class _DocumentError(ValueError):
    """The bytes are not a JSON document (or JSON Lines) a loader would accept."""


def decode_json_text(data: bytes, *, final: bool = True) -> str:
    """Decode JSON bytes in the encoding RFC 8259/4627 readers detect (BOM or null pattern).

    A leading BOM is removed. ``final=False`` tolerates a character cut at the end (a probe).

    Raises:
        UnicodeDecodeError: the bytes are not text in the detected encoding.
    """
    encoding = json.detect_encoding(data)
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    return decoder.decode(data, final=final).removeprefix("\ufeff")


def looks_like_json(head: bytes) -> bool:
    """True when ``head`` starts like a JSON object or array (not ``[PAD]`` or ``{{ x }}``)."""
    try:
        text = decode_json_text(head[:_SNIFF_BYTES], final=False)
    except (UnicodeDecodeError, LookupError):
        return False
    body = text.lstrip(_JSON_SPACE)
    if not body:
        return False
    rest = body[1:].lstrip(_JSON_SPACE)
    if body[0] == "{":
        return not rest or rest[0] in '"}'
    if body[0] == "[":
        return not rest or rest[0] in _VALUE_STARTS
    return False


def _parse(data: bytes, shadowed: list[tuple[str, object]]) -> list[object]:  # noqa: C901 - one exit per way a document can be refused
    """Parse one document, or JSON Lines; keep every value a duplicate key shadows."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                shadowed.append((key, result[key]))
            result[key] = value
        return result

    try:
        text = decode_json_text(data)
    except (UnicodeDecodeError, LookupError) as exc:
        msg = f"not text in the encoding its first bytes declare: {exc}"
        raise _DocumentError(msg) from exc
    try:
        return [json.loads(text, object_pairs_hook=hook)]
    except RecursionError as exc:
        msg = "JSON nested deeper than the parser's recursion limit"
        raise _DocumentError(msg) from exc
    except json.JSONDecodeError as exc:
        if not exc.msg.startswith("Extra data"):
            msg = f"not valid JSON: {exc}"
            raise _DocumentError(msg) from exc
        first = exc
    # JSON Lines (datasets, logs beside a model): every non-blank line is one document.
    documents: list[object] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip(_JSON_SPACE):
            try:
                documents.append(json.loads(line, object_pairs_hook=hook))
            except (json.JSONDecodeError, RecursionError) as exc:
                msg = f"not valid JSON ({first.msg}) nor JSON Lines (line {number}: {exc})"
                raise _DocumentError(msg) from exc
    return documents


class JsonHandler(FormatHandler):
    """JSON documents (configs, tokenizer files, Keras architectures, JSON Lines)."""

    format: ClassVar[FileFormat] = FileFormat.JSON
    # Text with Jinja syntax (templates.py) is TEXT; a JSON document holding a template is
    # read as JSON, and its templates are checked from here.
    refines: ClassVar[FileFormat | None] = FileFormat.TEXT

    def sniff(self, probe: Probe) -> bool:
        """A document that starts like JSON; one that fits in the probe must parse."""
        if not looks_like_json(probe.head):
            return False
        if probe.size is not None and probe.size <= len(probe.head):
            try:
                _parse(probe.head, [])
            except _DocumentError:
                return False
        return True

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Parse strictly; check every template, ``auto_map`` and Keras objects."""
        limit = ctx.limits.max_header_bytes
        with source.open() as stream:
            raw = stream.read(limit + 1)
        if len(raw) > limit:
            ctx.report(
                "MAM-JSON-002",
                f"JSON document larger than {limit} bytes; its content was not checked",
            )
            return
        shadowed: list[tuple[str, object]] = []
        try:
            documents = _parse(raw, shadowed)
        except _DocumentError as exc:
            # It starts like JSON, so a loader may try it; what a lenient reader makes of it
            # is unknown (fail closed).
            ctx.report("MAM-JSON-002", str(exc))
            return
        for key, _ in shadowed[:_MAX_REPORTED_DUPLICATES]:
            ctx.report(
                "MAM-JSON-003",
                f"key {key!r} appears twice; parsers disagree on which value wins",
                evidence=key,
            )
        _check_values(documents, shadowed, ctx)


def _check_values(
    documents: list[object], shadowed: list[tuple[str, object]], ctx: ScanContext
) -> None:
    # Lazy: jinja2 and the Keras walker are imported only when a JSON document is scanned.
    from mamori.scan._internal.jinja_check import report_config_string  # noqa: PLC0415
    from mamori.scan._internal.keras_config import report_keras_config  # noqa: PLC0415

    roots: list[tuple[_Path, object]] = [((None, "$"), d) for d in documents]
    roots += [((None, f"{key} (value shadowed by a duplicate key)"), v) for key, v in shadowed]
    found = _check_strings(roots, ctx, report_config_string)
    if found is None:
        return
    auto_maps, keras_shaped = found
    for path, hook in auto_maps:
        targets = sorted({str(v) for v in _flatten(hook)})
        more = " ..." if len(targets) > _MAX_SHOWN_TARGETS else ""
        where = _render(path).removeprefix("$")
        ctx.report(
            "MAM-JSON-001",
            f"{where} makes transformers import repository code when trust_remote_code is "
            f"set: {', '.join(targets[:_MAX_SHOWN_TARGETS])}{more}",
            evidence=", ".join(targets[:20]),
        )
    if keras_shaped:
        for _, document in roots:
            report_keras_config(document, ctx, what="Keras objects in JSON")


def _check_strings(
    roots: list[tuple[_Path, object]],
    ctx: ScanContext,
    check: Callable[[str, str, str, ScanContext], None],
) -> tuple[list[tuple[_Path, object]], bool] | None:
    """Check every string that may be a template; collect auto_maps and Keras objects."""
    auto_maps: list[tuple[_Path, object]] = []
    keras_shaped = False
    for count, (path, key, value) in enumerate(_walk(roots), 1):
        if count > _MAX_VALUES:
            ctx.report(
                "MAM-JSON-002",
                f"JSON document holds more than {_MAX_VALUES} values; the rest was not checked",
            )
            return None
        if isinstance(value, str):
            if "{" in value:
                check(_render(path), key, value, ctx)
        elif isinstance(value, dict):
            if isinstance(value.get("class_name"), str) and "config" in value:
                keras_shaped = True
            auto_maps.extend(((path, f".{k}"), value[k]) for k in _REMOTE_CODE_KEYS if value.get(k))
    return auto_maps, keras_shaped


# A JSON path as a linked list ``(parent, label)``, rendered only for values that are reported.
_Path = tuple[object, str]


def _walk(roots: list[tuple[_Path, object]]) -> Iterator[tuple[_Path, str, object]]:
    """Yield ``(path, nearest key, value)`` for every value, iteratively (deep is legal)."""
    stack: list[tuple[_Path, str, object]] = [(path, "", value) for path, value in reversed(roots)]
    while stack:
        path, key, value = stack.pop()
        yield path, key, value
        if isinstance(value, dict):
            stack.extend(((path, f".{k}"), k, v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            for i in range(len(value) - 1, -1, -1):
                item = value[i]
                # Named entries ({"name": "tool_use", "template": ...}) read better by name.
                name = item.get("name") if isinstance(item, dict) else None
                label = f"[{name}]" if isinstance(name, str) else f"[{i}]"
                stack.append(((path, label), key, item))


def _render(path: _Path) -> str:
    parts: list[str] = []
    node: object = path
    while isinstance(node, tuple):
        parent, label = node
        parts.append(label)
        node = parent
    return "".join(reversed(parts)).removeprefix("$.")


def _flatten(value: object) -> list[object]:
    if isinstance(value, dict):
        return [item for v in value.values() for item in _flatten(v)]
    if isinstance(value, list | tuple):
        return [item for v in value for item in _flatten(v)]
    return [] if value is None else [value]
