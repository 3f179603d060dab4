"""YAML configs beside models: templates in any value, Python object tags.

Model repositories and serving stacks keep configs in YAML (prompt and chat templates, serving
configs, Hydra/OmegaConf training configs). Two things in them make a loader run code:

* a Jinja template in any string value, rendered by the server (checked like every template);
* a ``!!python/...`` tag (``!!python/object/apply:os.system``), which ``yaml.load`` with
  PyYAML's ``Loader``/``UnsafeLoader`` (and ``FullLoader`` before 5.4, CVE-2020-14343) turns
  into a call while loading.

The document is *composed* with the safe loader (``yaml.compose_all``: a graph of nodes with
their tags; no object is constructed, no tag is resolved to Python) and walked once per node,
so alias bombs cost one visit per node, not per path. Recognition is by content: the first
significant line is ``---``, a ``%YAML`` directive or a ``key:`` mapping entry, and a file that
fits in the probe must compose.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar, Final

from mamori.findings import FileFormat
from mamori.scan._internal.source import Source
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext
from mamori.scan.formats.template import decode_text

if TYPE_CHECKING:
    import yaml

__all__ = ["YamlHandler"]

MAX_YAML_BYTES: Final = 16 << 20
"""Configs are kilobytes; a larger YAML file is reported, not parsed (the composer is slow)."""
_MAX_NODES: Final = 2_000_000
_MAX_REPORTED_TAGS: Final = 20
_PYTHON_TAG: Final = "tag:yaml.org,2002:python/"
_MAPPING_ENTRY: Final = re.compile(r"""^(?:[A-Za-z_][\w.\-/ ]*|"[^"\n]*"|'[^'\n]*')\s*:(?:\s|$)""")


def _first_significant_line(text: str) -> str | None:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return line
    return None


class YamlHandler(FormatHandler):
    """A YAML document (or stream of documents) whose top level is a mapping."""

    format: ClassVar[FileFormat] = FileFormat.YAML
    refines: ClassVar[FileFormat | None] = FileFormat.TEXT

    def sniff(self, probe: Probe) -> bool:
        """Starts with ``---``, ``%YAML`` or ``key:``; one that fits in the probe must compose."""
        whole = probe.size is not None and probe.size <= len(probe.head)
        text = decode_text(probe.head, final=whole)
        if text is None:
            return False
        line = _first_significant_line(text)
        if line is None:
            return False
        if not (line.startswith(("---", "%YAML")) or _MAPPING_ENTRY.match(line)):
            return False
        if not whole:
            # A larger file must compose up to its last complete line in the probe: prose
            # that happens to start with "Note: ..." does not.
            text = text[: text.rfind("\n") + 1]
        try:
            roots = _compose(text)
        except ValueError:
            return False
        return any(_is_mapping(root) for root in roots)

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Compose safely; check every string for templates and every tag for Python."""
        with source.open() as stream:
            raw = stream.read(MAX_YAML_BYTES + 1)
        if len(raw) > MAX_YAML_BYTES:
            ctx.report("MAM-YAML-001", f"YAML document larger than {MAX_YAML_BYTES} bytes")
            return
        text = decode_text(raw)
        if text is None:
            ctx.report("MAM-YAML-001", "YAML document is not UTF-8 text")
            return
        try:
            roots = _compose(text)
        except ValueError as exc:
            ctx.report("MAM-YAML-001", str(exc))
            return
        _check(roots, text, ctx)


def _compose(text: str) -> list[yaml.Node]:
    """Every document's root node, composed with the safe loader (nothing is constructed)."""
    import yaml  # noqa: PLC0415 - only YAML files pay for the import

    try:
        # An empty document composes to None at run time, whatever the stubs say.
        roots: list[yaml.Node | None] = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        return [root for root in roots if root is not None]
    except yaml.YAMLError as exc:
        msg = f"not valid YAML: {' '.join(str(exc).split())[:300]}"
        raise ValueError(msg) from exc
    except RecursionError as exc:
        msg = "YAML nested deeper than the parser's recursion limit"
        raise ValueError(msg) from exc


def _is_mapping(node: yaml.Node) -> bool:
    import yaml  # noqa: PLC0415

    return isinstance(node, yaml.MappingNode)


def _delimiters(text: str) -> int:
    return text.count("{{") + text.count("{%")


def _check(roots: list[yaml.Node], text: str, ctx: ScanContext) -> None:
    import yaml  # noqa: PLC0415

    from mamori.scan._internal.jinja_check import report_config_string  # noqa: PLC0415

    in_values = 0
    tags = 0
    for count, (path, key, node) in enumerate(_walk(roots), 1):
        if count > _MAX_NODES:
            ctx.report("MAM-YAML-001", f"YAML holds more than {_MAX_NODES} nodes; rest unchecked")
            return
        if node.tag.startswith(_PYTHON_TAG):
            tags += 1
            if tags <= _MAX_REPORTED_TAGS:
                ctx.report(
                    "MAM-YAML-002",
                    f"{path or 'document'}: tag !!{node.tag.removeprefix('tag:yaml.org,2002:')}"
                    " builds a Python object when loaded with yaml.load/unsafe_load",
                    offset=node.start_mark.index,
                    evidence=node.tag,
                )
        if isinstance(node, yaml.ScalarNode) and "{" in node.value:
            in_values += _delimiters(node.value)
            line = node.start_mark.line + 1
            report_config_string(f"{path or 'document'} (line {line})", key, node.value, ctx)
    if _delimiters(text) > in_values:
        # Jinja delimiters that YAML read as syntax (`role: {{ x }}` is a flow mapping to YAML),
        # so no value holds them: the file is also a template (config.yaml.j2, Ansible, ...)
        # and a renderer sees an expression there. Check the whole text as one.
        report_config_string("document text (rendered as a template)", "", text, ctx)


def _walk(roots: list[yaml.Node]) -> Iterator[tuple[str, str, yaml.Node]]:
    """Each node once (``(path, nearest key, node)``), iteratively; aliases are not re-walked."""
    import yaml  # noqa: PLC0415

    seen: set[int] = set()
    stack: list[tuple[str, str, yaml.Node]] = [("", "", root) for root in reversed(roots)]
    while stack:
        path, key, node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield path, key, node
        if isinstance(node, yaml.MappingNode):
            for k, v in reversed(node.value):
                name = str(k.value) if isinstance(k, yaml.ScalarNode) else "?"
                stack.append((f"{path}.{name}" if path else name, name, v))
                stack.append((path, key, k))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((f"{path}[{i}]", key, v) for i, v in reversed(list(enumerate(node.value))))
