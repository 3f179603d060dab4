"""Static checks of Jinja2 templates (chat templates, config strings) for template injection.

Chat templates ship inside model files (GGUF ``tokenizer.chat_template``), tokenizer configs
(``tokenizer_config.json``), standalone ``chat_template.jinja`` files and YAML configs. Servers
render them with Jinja2, some without a sandbox: CVE-2024-34359 ("Llama Drama",
llama-cpp-python) turned a GGUF chat template into remote code execution through
``{{ cycler.__init__.__globals__.os.popen(...) }}``.

This module only *parses* the template (``Environment.parse`` builds an AST and runs nothing)
and walks the AST; it never compiles or renders it. The model of what a template can do:

* Starting from conversation data (dicts, lists, strings, numbers), a chain of reads whose
  keys are literal, public names reaches only data and bound methods of built-in types; those
  have no public attribute leading further. So literal public reads on data are allowed.
* Every Jinja2 escape needs one of: an underscore name (``__globals__``; CRITICAL/HIGH), a
  gadget global (``cycler``, ``self``, Flask's ``request``; MEDIUM), an attribute or subscript
  of a global *function* (``namespace[...]``; HIGH), a call of a method outside the vocabulary
  of str/dict/list methods (``'{0.__class__}'.format``; HIGH), a call of a computed callable
  (HIGH), or a *computed* key: Jinja's ``getitem`` falls back to ``getattr``, so
  ``x[u ~ 'class' ~ u]`` is ``x.__class__`` under another name. A key built from strings is
  HIGH; any other computed key that is not provably a number is MEDIUM.
* Reads of an object the template does not get from the known renderer context (an unknown
  global) with a key outside the vocabulary real templates use are MEDIUM: we do not know what
  the renderer put there (Flask's ``config``, ``request``).

The vocabularies are in :mod:`mamori.scan._internal.jinja_vocab`. A template that does not
parse is itself an issue: a renderer with other extensions may accept it, and we cannot say
what it does.
"""

from __future__ import annotations

import functools
from typing import Final

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError

from mamori.findings import Severity
from mamori.scan._internal.context import ScanContext
from mamori.scan._internal.jinja_walk import TemplateIssue, TemplateIssueKind, walk_template

__all__ = [
    "MAX_TEMPLATE_CHARS",
    "TemplateIssue",
    "TemplateIssueKind",
    "check_template",
    "looks_like_template",
    "parse_template",
    "report_config_string",
    "report_template",
]

MAX_TEMPLATE_CHARS: Final = 1 << 20
"""Longest template analysed. Real chat templates are a few KiB; Jinja parsing is superlinear
in pathological inputs, so larger ones are an issue, not a parse."""


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


@functools.cache
def _environment() -> jinja2.Environment:
    # The options of transformers' chat-template environment: loopcontrols ({% break %}),
    # the generation tag, trim/lstrip blocks. autoescape is irrelevant: we never render.
    return jinja2.Environment(  # noqa: S701 - the template is parsed, never rendered
        extensions=["jinja2.ext.loopcontrols", _GenerationTag],
        trim_blocks=True,
        lstrip_blocks=True,
    )


def looks_like_template(text: str) -> bool:
    """True when ``text`` has Jinja statement or expression delimiters (cheap pre-check)."""
    return "{%" in text or "{{" in text


def parse_template(source: str) -> nodes.Template | TemplateIssue:
    """Parse ``source`` (never render it); return the AST or the issue that stopped parsing."""
    if len(source) > MAX_TEMPLATE_CHARS:
        return TemplateIssue(
            TemplateIssueKind.TOO_LARGE,
            Severity.HIGH,
            f"template of {len(source)} characters exceeds {MAX_TEMPLATE_CHARS}; not parsed",
            source[:80],
        )
    try:
        return _environment().parse(source)
    except TemplateSyntaxError as exc:
        return TemplateIssue(
            TemplateIssueKind.PARSE_ERROR,
            Severity.HIGH,
            f"template does not parse: {exc.message}",
            source[:80],
            exc.lineno,
        )
    except (RecursionError, MemoryError, ValueError, TypeError, OverflowError) as exc:
        return TemplateIssue(
            TemplateIssueKind.PARSE_ERROR,
            Severity.HIGH,
            f"template parser failed: {type(exc).__name__}",
            source[:80],
        )


def check_template(source: str) -> list[TemplateIssue]:
    """Parse ``source`` as a Jinja2 template (never render it) and list injection patterns.

    An empty list means nothing outside the model in the module docstring was found. A
    template that cannot be parsed yields a ``PARSE_ERROR`` issue: treat it as unsafe.
    """
    tree = parse_template(source)
    if isinstance(tree, TemplateIssue):
        return [tree]
    return walk_template(tree)


_UNPARSED: Final = frozenset({TemplateIssueKind.PARSE_ERROR, TemplateIssueKind.TOO_LARGE})


def report_template(key: str, template: str, ctx: ScanContext, *, offset: int | None) -> None:
    """Check a template found under ``key`` and report each issue through ``ctx``.

    Shared by every format that carries templates (GGUF metadata, JSON and YAML configs,
    standalone template files).
    """
    _report(key, check_template(template), ctx, offset=offset)


def report_config_string(path: str, key: str, value: str, ctx: ScanContext) -> None:
    """Check one string value of a config (JSON, YAML) at ``path`` that may be a template.

    A value that parses as a template with a statement or an expression is checked whatever
    its key. One that does not parse is reported only under a key naming a template
    (``chat_template``, ``custom_chat_template``, ...): elsewhere it is text that happens to
    hold braces (a tokenizer's ``{{`` token), which no renderer is asked to render.
    """
    if not looks_like_template(value):
        return
    issues = check_template(value)
    if issues and issues[0].kind is TemplateIssueKind.PARSE_ERROR and "template" not in key.lower():
        return
    _report(path, issues, ctx, offset=None)


def _report(key: str, issues: list[TemplateIssue], ctx: ScanContext, *, offset: int | None) -> None:
    for issue in issues:
        rule_id = "MAM-TPL-002" if issue.kind in _UNPARSED else "MAM-TPL-001"
        where = f" (line {issue.line})" if issue.line is not None else ""
        ctx.report(
            rule_id,
            f"{key}: {issue.message}{where}",
            offset=offset,
            evidence=issue.evidence,
            severity=issue.severity,
        )
