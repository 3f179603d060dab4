"""Standalone Jinja2 templates: ``chat_template.jinja``, ``*.j2``, ``*.template`` files.

New Hugging Face repositories ship the chat template as its own file (``chat_template.jinja``,
read by ``transformers`` in preference to ``tokenizer_config.json``), and inference servers
take ``--chat-template path``. Such a file is recognised by content: text with Jinja
delimiters that parses as a template (a file that fits in the probe), or text that starts
with a Jinja tag (a larger one). It is parsed, never rendered, and checked like every other
template (:mod:`mamori.scan._internal.jinja_check`). JSON and YAML documents that hold
templates are read by their own handlers, which refine this format.
"""

from __future__ import annotations

from typing import ClassVar, Final

from mamori.findings import FileFormat
from mamori.scan._internal.source import Source
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext

__all__ = ["TemplateHandler", "decode_text"]

_OPENERS: Final = ("{%", "{{", "{#")
# Four times jinja_check.MAX_TEMPLATE_CHARS (UTF-8 needs at most 4 bytes a character); a
# literal, because importing jinja_check imports jinja2, which only templates should pay for.
_MAX_BYTES: Final = 4 << 20


def decode_text(data: bytes, *, final: bool = True) -> str | None:
    """Decode UTF-8 text (a BOM is dropped); ``None`` for binary or non-UTF-8 bytes.

    ``final=False`` tolerates a character cut at the end (a probe of a larger file).
    """
    if b"\0" in data:
        return None
    body = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not final and exc.start >= len(body) - 3 and exc.reason == "unexpected end of data":
            return body[: exc.start].decode("utf-8", "strict")
        return None


class TemplateHandler(FormatHandler):
    """Text that is a Jinja2 template with at least one statement or expression."""

    format: ClassVar[FileFormat] = FileFormat.TEXT

    def sniff(self, probe: Probe) -> bool:
        """Text with Jinja delimiters: a small file must parse or start with a Jinja tag."""
        whole = probe.size is not None and probe.size <= len(probe.head)
        text = decode_text(probe.head, final=whole)
        if text is None:
            return False
        if not whole and not _has_delimiters(text):
            tail = probe.tail or b""
            if b"\0" in tail or (b"{{" not in tail and b"{%" not in tail):
                return False
        starts_as_template = text.lstrip().startswith(_OPENERS)
        if not whole:
            # Larger than the probe: text with Jinja delimiters in its head (or its tail, where
            # a payload after pages of filler would sit) is read whole and parsed in scan().
            return True
        if not _has_delimiters(text):
            return False
        # Lazy: jinja2 is imported only for text that holds Jinja delimiters.
        from mamori.scan._internal.jinja_check import TemplateIssue, parse_template  # noqa: PLC0415

        return starts_as_template or not isinstance(parse_template(text), TemplateIssue)

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Parse the whole file as a template and report every issue."""
        from mamori.scan._internal.jinja_check import (  # noqa: PLC0415
            report_config_string,
            report_template,
        )

        with source.open() as stream:
            raw = stream.read(_MAX_BYTES + 1)
        if len(raw) > _MAX_BYTES:
            ctx.report("MAM-TPL-002", f"template file larger than {_MAX_BYTES} bytes; not parsed")
            return
        text = decode_text(raw)
        if text is None:
            ctx.report("MAM-TPL-002", "template file is not UTF-8 text; not parsed")
            return
        name = ctx.member_path[-1] if ctx.member_path else ""
        label = name or "template file"
        if text.lstrip().startswith(_OPENERS):
            report_template(label, text, ctx, offset=None)
        else:
            # Text that only holds delimiters somewhere: what does not parse is not rendered
            # by jinja2 either (and is reported only under a name that says "template").
            report_config_string(label, name, text, ctx)


def _has_delimiters(text: str) -> bool:
    return "{%" in text or "{{" in text
