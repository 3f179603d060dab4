"""Static checks of Jinja2 chat templates for server-side template injection (SSTI).

Chat templates ship inside model files (GGUF ``tokenizer.chat_template``) and tokenizer configs
(``tokenizer_config.json``). Servers render them with Jinja2, some without a sandbox:
CVE-2024-34359 ("Llama Drama", llama-cpp-python) turned a GGUF chat template into remote code
execution through ``{{ cycler.__init__.__globals__.os.popen(...) }}``.

This module only *parses* the template (``Environment.parse`` builds an AST and runs nothing)
and walks the AST. It never compiles or renders it, so a sandbox would add nothing. The walk
flags the building blocks every known Jinja2 escape needs: access to underscore attributes,
the gadget globals that expose ``__globals__``, names of process and import primitives, and
statements that load other templates. A template that does not parse is itself an issue: a
renderer with other extensions may still accept it, and we cannot say what it does.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError

from mamori.findings import Severity
from mamori.scan.formats.interface import ScanContext

__all__ = [
    "MAX_TEMPLATE_CHARS",
    "TemplateIssue",
    "TemplateIssueKind",
    "check_template",
    "report_template",
]

MAX_TEMPLATE_CHARS: Final = 1 << 20
"""Longest template analysed. Real chat templates are a few KiB; Jinja parsing is superlinear
in pathological inputs, so larger ones are an issue, not a parse."""

_MAX_NODES: Final = 200_000


class TemplateIssueKind(enum.Enum):
    """What kind of problem a template has."""

    PARSE_ERROR = "parse-error"
    TOO_LARGE = "too-large"
    DUNDER_ACCESS = "dunder-access"
    PRIVATE_ACCESS = "private-access"
    DYNAMIC_ATTRIBUTE = "dynamic-attribute"
    GADGET_GLOBAL = "gadget-global"
    DANGEROUS_NAME = "dangerous-name"
    TEMPLATE_LOADING = "template-loading"


@dataclass(frozen=True, slots=True)
class TemplateIssue:
    """One problem found in a template, with the source line when Jinja knows it."""

    kind: TemplateIssueKind
    severity: Severity
    message: str
    evidence: str
    line: int | None = None


# Dunders that appear in every published Jinja2/Python sandbox escape; reaching any of them is
# the first step from a template object to the interpreter.
_DANGEROUS_DUNDERS: Final = frozenset(
    {
        "__globals__",  # function -> module globals (os, sys, builtins)
        "__subclasses__",  # object.__subclasses__() -> every loaded class, e.g. Popen
        "__mro__",  # class -> object
        "__base__",  # class -> base class
        "__bases__",  # class -> base classes
        "__class__",  # instance -> class
        "__init__",  # class -> function object with __globals__
        "__builtins__",  # -> eval, exec, __import__, open
        "__import__",  # import any module
        "__dict__",  # attribute dictionary of anything
        "__getattribute__",  # attribute access that bypasses Jinja's getattr
        "__code__",  # function bytecode
        "__func__",  # bound method -> function
        "__self__",  # bound method -> object
        "__loader__",  # module loader -> import machinery
        "__spec__",  # module spec -> loader
        "__reduce__",  # pickle protocol gadgets
        "__reduce_ex__",
    }
)

# Globals of a default jinja2.Environment (and Flask's) that lead to __globals__ in one step;
# HF's chat-template environment defines none of them, so a chat template has no reason to use
# them. `namespace` and `range` are left out on purpose: real templates (Llama 3.1, Qwen) use
# `namespace(...)`, and both are only dangerous through dunder access, which is flagged anyway.
_GADGET_GLOBALS: Final = frozenset(
    {
        "cycler",  # jinja2.utils.Cycler: cycler.__init__.__globals__
        "joiner",  # jinja2.utils.Joiner: joiner.__init__.__globals__
        "lipsum",  # jinja2.utils.generate_lorem_ipsum.__globals__
        "self",  # TemplateReference: self._TemplateReference__context
        "config",  # Flask config object: config.__class__.from_envvar.__globals__
        "request",  # Flask request: request.application.__globals__
        "url_for",  # Flask helper: url_for.__globals__
        "get_flashed_messages",  # Flask helper: get_flashed_messages.__globals__
        "g",  # Flask app globals
    }
)

# Attribute and variable names of process, import and evaluation primitives. None of them is a
# legitimate part of formatting a conversation.
_DANGEROUS_NAMES: Final = frozenset(
    {
        "os",
        "sys",
        "subprocess",
        "builtins",
        "popen",
        "system",
        "spawn",
        "execv",
        "fork",
        "eval",
        "exec",
        "compile",
        "import_module",
        "importlib",
        "getattr",
        "setattr",
        "globals",
        "locals",
        "open",
        "mro",
        "func_globals",
        "f_globals",
        "gi_frame",
        "tb_frame",
        "f_back",
    }
)


class _GenerationTag(jinja2.ext.Extension):
    """Parses ``{% generation %}...{% endgeneration %}`` like transformers' AssistantTracker.

    Hugging Face renders chat templates with this tag enabled, so real templates use it. Only
    the parse method exists here: the body is returned as-is and nothing is ever rendered.
    """

    tags: Final = {"generation"}  # type: ignore[misc]  # jinja declares this as a class attribute

    def parse(self, parser: jinja2.parser.Parser) -> nodes.Node | list[nodes.Node]:
        """Return the body between the tags as plain nodes."""
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _environment() -> jinja2.Environment:
    # loopcontrols ({% break %}, {% continue %}) is enabled by transformers' chat template
    # environment, so benign templates use it. autoescape is irrelevant: we never render.
    return jinja2.Environment(  # noqa: S701 - the template is parsed, never rendered
        extensions=["jinja2.ext.loopcontrols", _GenerationTag]
    )


def check_template(source: str) -> list[TemplateIssue]:
    """Parse ``source`` as a Jinja2 template (never render it) and list injection patterns.

    An empty list means no known escape primitive was found. A template that cannot be parsed
    yields a ``PARSE_ERROR`` issue: the caller should treat it as unsafe (fail closed).
    """
    if len(source) > MAX_TEMPLATE_CHARS:
        return [
            TemplateIssue(
                TemplateIssueKind.TOO_LARGE,
                Severity.HIGH,
                f"template of {len(source)} characters exceeds {MAX_TEMPLATE_CHARS}; not parsed",
                source[:80],
            )
        ]
    try:
        tree = _environment().parse(source)
    except TemplateSyntaxError as exc:
        return [
            TemplateIssue(
                TemplateIssueKind.PARSE_ERROR,
                Severity.HIGH,
                f"template does not parse: {exc.message}",
                source[:80],
                exc.lineno,
            )
        ]
    except (RecursionError, MemoryError, ValueError, TypeError, OverflowError) as exc:
        return [
            TemplateIssue(
                TemplateIssueKind.PARSE_ERROR,
                Severity.HIGH,
                f"template parser failed: {type(exc).__name__}",
                source[:80],
            )
        ]
    return _Walker().run(tree)


def _fold(node: nodes.Node) -> str | None:
    """Return the string a constant expression evaluates to (``'__cl' ~ 'ass__'``), else None."""
    if isinstance(node, nodes.Const):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, nodes.Concat):
        parts = [_fold(n) for n in node.nodes]
        return None if any(p is None for p in parts) else "".join(p or "" for p in parts)
    if isinstance(node, nodes.Add):
        left, right = _fold(node.left), _fold(node.right)
        return None if left is None or right is None else left + right
    return None


class _Walker:
    def __init__(self) -> None:
        self.issues: list[TemplateIssue] = []

    def run(self, tree: nodes.Template) -> list[TemplateIssue]:
        for count, node in enumerate(_iter_nodes(tree), 1):
            if count > _MAX_NODES:
                self._add(
                    TemplateIssueKind.TOO_LARGE,
                    Severity.HIGH,
                    f"template has more than {_MAX_NODES} syntax nodes",
                    "",
                    node,
                )
                break
            self._visit(node)
        return self.issues

    def _add(
        self,
        kind: TemplateIssueKind,
        severity: Severity,
        message: str,
        evidence: str,
        node: nodes.Node,
    ) -> None:
        self.issues.append(TemplateIssue(kind, severity, message, evidence, node.lineno))

    def _visit(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Getattr):
            self._attribute(node.attr, node)
        elif isinstance(node, nodes.Getitem):
            key = _fold(node.arg)
            if key is not None:
                self._attribute(key, node)
            elif _builds_string(node.arg):
                # Jinja's getitem falls back to getattr, so x[<built string>] is attribute
                # access under another name; escapes build "__class__" from characters to
                # dodge string filters. Plain indices (messages[loop.index0]) are not flagged.
                self._add(
                    TemplateIssueKind.DYNAMIC_ATTRIBUTE,
                    Severity.HIGH,
                    "subscript with a key built from strings at render time",
                    "getitem",
                    node,
                )
        elif isinstance(node, nodes.Filter | nodes.Test):
            self._filter(node)
        elif isinstance(node, nodes.Name):
            self._name(node)
        elif isinstance(node, nodes.Keyword) and node.key.startswith("_"):
            self._attribute(node.key, node)
        elif isinstance(node, nodes.Import | nodes.FromImport | nodes.Include | nodes.Extends):
            self._add(
                TemplateIssueKind.TEMPLATE_LOADING,
                Severity.HIGH,
                f"{type(node).__name__.lower()} statement loads another template",
                type(node).__name__,
                node,
            )
        elif isinstance(node, nodes.Const | nodes.Concat | nodes.Add):
            self._string(node)

    def _attribute(self, attr: str, node: nodes.Node) -> None:
        if attr in _DANGEROUS_DUNDERS:
            self._add(
                TemplateIssueKind.DUNDER_ACCESS,
                Severity.CRITICAL,
                f"access to {attr}, a step of known Jinja2 sandbox escapes",
                attr,
                node,
            )
        elif attr.startswith("_"):
            self._add(
                TemplateIssueKind.PRIVATE_ACCESS,
                Severity.HIGH,
                f"access to private attribute {attr!r}",
                attr,
                node,
            )
        elif attr in _DANGEROUS_NAMES:
            self._add(
                TemplateIssueKind.DANGEROUS_NAME,
                Severity.HIGH,
                f"access to attribute {attr!r}, a process, import or eval primitive",
                attr,
                node,
            )

    def _filter(self, node: nodes.Filter | nodes.Test) -> None:
        # `x|attr("__class__")` is getattr by another name; Jinja's own docs show it in escapes.
        if node.name != "attr" or not isinstance(node, nodes.Filter):
            return
        if not node.args:
            return
        name = _fold(node.args[0])
        if name is None:
            self._add(
                TemplateIssueKind.DYNAMIC_ATTRIBUTE,
                Severity.HIGH,
                "attr filter with a computed attribute name",
                "attr",
                node,
            )
        else:
            self._attribute(name, node)

    def _name(self, node: nodes.Name) -> None:
        if node.name in _GADGET_GLOBALS:
            self._add(
                TemplateIssueKind.GADGET_GLOBAL,
                Severity.MEDIUM,
                f"use of {node.name!r}, a global that exposes __globals__ in default Jinja2",
                node.name,
                node,
            )
        elif node.name.startswith("_") or node.name in _DANGEROUS_NAMES:
            self._add(
                TemplateIssueKind.DANGEROUS_NAME,
                Severity.HIGH,
                f"use of variable {node.name!r}",
                node.name,
                node,
            )

    def _string(self, node: nodes.Node) -> None:
        # Dunder names hidden in strings reach attributes through str.format ("{0.__class__}")
        # or through a computed subscript; the constant folding above covers simple concat.
        text = _fold(node)
        if text is None or "__" not in text:
            return
        hits = sorted(d for d in _DANGEROUS_DUNDERS if d in text)
        if hits:
            self._add(
                TemplateIssueKind.DUNDER_ACCESS,
                Severity.CRITICAL,
                f"string constant names {', '.join(hits)}",
                text[:80],
                node,
            )


# Filters that build or reshape strings: the tools for assembling a dunder name character by
# character ("%c"|format(95), (x|string|list)[n], [...]|join).
_STRING_BUILDERS: Final = frozenset(
    {"join", "format", "string", "replace", "reverse", "lower", "upper", "list", "first", "last"}
)


def _builds_string(expr: nodes.Node) -> bool:
    """True when ``expr`` concatenates, formats or filters values into a string."""
    for node in _iter_nodes(expr):
        if isinstance(node, nodes.Concat | nodes.Mod):
            return True
        if isinstance(node, nodes.Filter) and node.name in _STRING_BUILDERS:
            return True
        if isinstance(node, nodes.Add) and (_fold(node.left) or _fold(node.right)):
            return True
    return False


def _iter_nodes(tree: nodes.Node) -> Iterator[nodes.Node]:
    """Every node of the tree, iteratively (deep templates must not exhaust the stack)."""
    stack: list[nodes.Node] = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.iter_child_nodes())


_UNPARSED: Final = frozenset({TemplateIssueKind.PARSE_ERROR, TemplateIssueKind.TOO_LARGE})


def report_template(key: str, template: str, ctx: ScanContext, *, offset: int | None) -> None:
    """Check a chat template found under ``key`` and report each issue through ``ctx``.

    Shared by every format that carries chat templates (GGUF metadata, tokenizer JSON).
    """
    for issue in check_template(template):
        rule_id = "MAM-TPL-002" if issue.kind in _UNPARSED else "MAM-TPL-001"
        where = f" (line {issue.line})" if issue.line is not None else ""
        ctx.report(
            rule_id,
            f"{key}: {issue.message}{where}",
            offset=offset,
            evidence=issue.evidence,
            severity=issue.severity,
        )
