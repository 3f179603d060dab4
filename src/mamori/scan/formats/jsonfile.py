"""JSON files that ride along with models: chat templates and remote-code hooks.

``tokenizer_config.json`` carries Jinja chat templates that servers render (template injection,
CVE-2024-34359), and ``config.json`` may carry ``auto_map``, which makes ``transformers`` import
Python code from the repository under ``trust_remote_code``. Everything else in a JSON file is
inert data: it is parsed strictly and otherwise left alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from mamori.findings import FileFormat
from mamori.scan._internal.source import Source
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext

__all__ = ["JsonHandler"]

_WHITESPACE: Final = b" \t\r\n"
_BOM: Final = b"\xef\xbb\xbf"
_OPENERS: Final = (b'{"', b"{}", b"[")


class _DuplicateKeyError(ValueError):
    pass


class JsonHandler(FormatHandler):
    """UTF-8 JSON documents (configs, tokenizer files, model cards' metadata)."""

    format: ClassVar[FileFormat] = FileFormat.JSON

    def sniff(self, probe: Probe) -> bool:
        """A document that starts like JSON; small ones must parse completely."""
        head = probe.head.removeprefix(_BOM).lstrip(_WHITESPACE)
        if not head.startswith(_OPENERS):
            return False
        if probe.size is not None and probe.size <= len(probe.head):
            try:
                json.loads(probe.head.removeprefix(_BOM))
            except (ValueError, UnicodeDecodeError):
                return False
        return True

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Parse strictly; check chat templates and ``auto_map``."""
        limit = ctx.limits.max_header_bytes
        with source.open() as stream:
            raw = stream.read(limit + 1)
        if len(raw) > limit:
            ctx.report(
                "MAM-JSON-002",
                f"JSON document larger than {limit} bytes; its content was not checked",
            )
            return
        duplicates: list[str] = []
        try:
            document = json.loads(
                raw.removeprefix(_BOM).decode("utf-8"),
                object_pairs_hook=lambda pairs: _no_duplicates(pairs, duplicates),
            )
        except (ValueError, UnicodeDecodeError) as exc:
            ctx.report("MAM-JSON-002", f"not valid UTF-8 JSON: {exc}")
            return
        except RecursionError:
            ctx.report("MAM-JSON-002", "JSON nested deeper than the parser's recursion limit")
            return
        for key in duplicates[:20]:
            ctx.report(
                "MAM-JSON-003",
                f"key {key!r} appears twice; parsers disagree on which value wins",
                evidence=key,
            )
        if isinstance(document, Mapping):
            _check_document(document, ctx)


def _no_duplicates(pairs: list[tuple[str, Any]], duplicates: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            duplicates.append(key)
        result[key] = value
    return result


def _check_document(document: Mapping[str, Any], ctx: ScanContext) -> None:
    # Lazy: jinja2 is imported only when a JSON document is scanned (start-up time).
    from mamori.scan._internal.jinja_check import report_template  # noqa: PLC0415

    template = document.get("chat_template")
    if isinstance(template, str):
        report_template("chat_template", template, ctx, offset=None)
    elif isinstance(template, list):
        # The named-template form: [{"name": "default", "template": "..."}, ...]
        for entry in template:
            if isinstance(entry, Mapping) and isinstance(entry.get("template"), str):
                name = str(entry.get("name", "?"))
                report_template(f"chat_template[{name}]", entry["template"], ctx, offset=None)
    auto_map = document.get("auto_map")
    if isinstance(auto_map, Mapping) and auto_map:
        targets = sorted({str(v) for v in _flatten(auto_map)})
        ctx.report(
            "MAM-JSON-001",
            "auto_map makes transformers import repository code when trust_remote_code "
            f"is set: {', '.join(targets[:5])}" + (" ..." if len(targets) > 5 else ""),  # noqa: PLR2004
            evidence=", ".join(targets[:20]),
        )


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return [item for v in value.values() for item in _flatten(v)]
    if isinstance(value, list | tuple):
        return [item for v in value for item in _flatten(v)]
    return [] if value is None else [value]
