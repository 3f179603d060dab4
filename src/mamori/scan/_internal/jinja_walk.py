"""The walk of a parsed Jinja2 template: the model described in :mod:`jinja_check`.

Two passes over the AST: ``_Bindings`` records what the template binds itself (loop and
``set`` variables with the expressions they come from, macros, namespace fields), then the
walker judges every read, subscript, call, filter and name against that and the vocabulary.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from jinja2 import nodes

from mamori.findings import Severity
from mamori.scan._internal import jinja_vocab as vocab
from mamori.scan._internal.jinja_vocab import DANGEROUS_DUNDERS, DANGEROUS_NAMES, GADGET_GLOBALS

__all__ = ["TemplateIssue", "TemplateIssueKind", "walk_template"]

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
    COMPUTED_KEY = "computed-key"
    UNVETTED_READ = "unvetted-read"
    UNVETTED_CALL = "unvetted-call"
    GLOBAL_MISUSE = "global-misuse"


@dataclass(frozen=True, slots=True)
class TemplateIssue:
    """One problem found in a template, with the source line when Jinja knows it."""

    kind: TemplateIssueKind
    severity: Severity
    message: str
    evidence: str
    line: int | None = None


def walk_template(tree: nodes.Template) -> list[TemplateIssue]:
    """Judge every node of a parsed template; return the issues found."""
    return _Walker(tree).run()


def _fold(node: nodes.Node) -> str | None:  # noqa: PLR0911 - one return per foldable node
    """The string a constant expression evaluates to (``'__cl' ~ 'ass__'``, ``'_' * 2``)."""
    if isinstance(node, nodes.Const):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, nodes.Concat):
        parts = [_fold(n) for n in node.nodes]
        return None if any(p is None for p in parts) else "".join(p or "" for p in parts)
    if isinstance(node, nodes.Add):
        left, right = _fold(node.left), _fold(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, nodes.Mul):
        text, count = _fold(node.left), node.right
        if text is None:
            text, count = _fold(node.right), node.left
        if text is not None and isinstance(count, nodes.Const) and isinstance(count.value, int):
            return text * max(0, min(count.value, 64))
        return None
    if isinstance(node, nodes.Filter) and node.node is not None and not node.args:
        inner = _fold_list(node.node) if node.name == "join" else _fold(node.node)
        if inner is not None:
            return {"join": inner, "lower": inner.lower(), "upper": inner.upper()}.get(
                node.name, inner[::-1] if node.name == "reverse" else None
            )
    return None


def _fold_list(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.List | nodes.Tuple):
        parts = [_fold(n) for n in node.items]
        return None if any(p is None for p in parts) else "".join(p or "" for p in parts)
    return _fold(node)


def _root(node: nodes.Node) -> nodes.Node:
    """The object a chain of reads and calls starts from (``a`` in ``a.b[c].d()``)."""
    while isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Call | nodes.Filter):
        if node.node is None:  # a filter block's body has no node
            break
        node = node.node
    return node


def _targets(node: nodes.Node) -> Iterator[str]:
    for sub in _iter_nodes(node):
        if isinstance(sub, nodes.Name):
            yield sub.name


class _Bindings:
    """What the template binds itself: variables (and from what), macros, namespace fields."""

    def __init__(self, tree: nodes.Template) -> None:
        self.sources: dict[str, list[nodes.Node | None]] = {}
        self.macros: set[str] = set()
        self.fields: set[str] = set()
        self.callees: set[int] = set()
        # Nodes whose value is used further (read, called, filtered by name or bound to a
        # variable) rather than only printed or tested.
        self.used: set[int] = set()
        for node in _iter_nodes(tree):
            self._note_use(node)
            self._note_binding(node)

    def _note_use(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Call | nodes.Filter):
            # A filter passes its input on (default, first, map, ...) unless it turns it into
            # text or a number, after which nothing of the object is left to reach.
            if node.node is not None and (
                not isinstance(node, nodes.Filter) or node.name not in vocab.TERMINAL_FILTERS
            ):
                self.used.add(id(node.node))
            if isinstance(node, nodes.Call):
                self.callees.add(id(node.node))
                if _is_name(node.node, "namespace"):
                    self.fields.update(kw.key for kw in node.kwargs)
        elif isinstance(node, nodes.Assign):
            self.used.add(id(node.node))
        elif isinstance(node, nodes.For):
            self.used.add(id(node.iter))
        elif isinstance(node, nodes.Test) and node.name in {"defined", "undefined"}:
            # `strftime_now is defined`: asking whether a global exists uses nothing of it.
            self.callees.add(id(node.node))

    def _bind(self, target: nodes.Node, source: nodes.Node | None) -> None:
        for name in _targets(target):
            self.sources.setdefault(name, []).append(source)

    def _note_binding(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.For):
            # A loop over range() yields integers; over anything else, data.
            numeric = isinstance(node.iter, nodes.Call) and _is_name(node.iter.node, "range")
            self._bind(node.target, nodes.Const(0) if numeric else node.iter)
        elif isinstance(node, nodes.Assign):
            if isinstance(node.target, nodes.NSRef):
                self.fields.add(node.target.attr)
                self.sources.setdefault("." + node.target.attr, []).append(node.node)
            else:
                self._bind(node.target, node.node)
        elif isinstance(node, nodes.AssignBlock):
            self._bind(node.target, None)  # {% set x %}..{% endset %} captures built text
        elif isinstance(node, nodes.Macro):
            self.macros.add(node.name)
            for arg in node.args:
                self._bind(arg, nodes.Const(""))
        elif isinstance(node, nodes.With):
            for target, value in zip(node.targets, node.values, strict=False):
                self._bind(target, value)

    def bound(self, name: str) -> bool:
        return name in self.sources or name in self.macros

    def built_string(self, expr: nodes.Node, seen: frozenset[str] = frozenset()) -> bool:
        """True when ``expr`` builds a string from parts (concat, repeat, format, filters)."""
        for node in _iter_nodes(expr):
            if isinstance(node, nodes.Concat | nodes.Mod):
                return True
            if isinstance(node, nodes.Filter) and node.name in vocab.STRING_BUILDERS:
                return True
            if isinstance(node, nodes.Add | nodes.Mul) and (
                _is_str(node.left) or _is_str(node.right)
            ):
                return True
            if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Slice):
                return True
            ref = _ref(node)
            if ref is not None and ref not in seen:
                for source in self.sources.get(ref, ()):
                    if source is None or self.built_string(source, seen | {ref}):
                        return True
        return False

    def numeric(self, expr: nodes.Node, seen: frozenset[str] = frozenset()) -> bool:  # noqa: PLR0911 - one return per node kind
        """True when ``expr`` can only be a number (an index), whatever the data."""
        if isinstance(expr, nodes.Const):
            return isinstance(expr.value, int | float) or expr.value is None
        if isinstance(expr, nodes.BinExpr):
            return self.numeric(expr.left, seen) and self.numeric(expr.right, seen)
        if isinstance(expr, nodes.UnaryExpr):
            return self.numeric(expr.node, seen)
        if isinstance(expr, nodes.CondExpr):
            branches = [expr.expr1] + ([expr.expr2] if expr.expr2 is not None else [])
            return all(self.numeric(b, seen) for b in branches)
        if isinstance(expr, nodes.Filter):
            return expr.name in vocab.NUMERIC_FILTERS
        if isinstance(expr, nodes.Getattr) and _is_name(expr.node, "loop"):
            return expr.attr in vocab.LOOP_ATTRIBUTES - {"previtem", "nextitem"}
        ref = _ref(expr)
        if ref is None or ref in seen or ref not in self.sources:
            return False
        return all(
            s is not None and self.numeric(s, seen | {ref}) for s in self.sources.get(ref, ())
        )


def _ref(node: nodes.Node) -> str | None:
    """The binding a node reads: a variable, or ``.field`` of a namespace."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
        return "." + node.attr
    return None


def _is_str(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Const) and isinstance(node.value, str)


def _is_name(node: nodes.Node | None, name: str) -> bool:
    return isinstance(node, nodes.Name) and node.name == name


class _Walker:
    def __init__(self, tree: nodes.Template) -> None:
        self.tree = tree
        self.bindings = _Bindings(tree)
        self.issues: list[TemplateIssue] = []

    def run(self) -> list[TemplateIssue]:
        for count, node in enumerate(_iter_nodes(self.tree), 1):
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
            self._read(node.node, node.attr, node)
        elif isinstance(node, nodes.Getitem):
            self._subscript(node)
        elif isinstance(node, nodes.Call):
            self._call(node)
        elif isinstance(node, nodes.Filter | nodes.Test):
            self._filter(node)
        elif isinstance(node, nodes.Name):
            self._name(node)
        elif isinstance(node, nodes.Keyword) and node.key.startswith("_"):
            self._attribute(node.key, node)
        elif isinstance(node, nodes.NSRef) and node.attr.startswith("_"):
            self._attribute(node.attr, node)  # {% set ns.__x = ... %}
        elif isinstance(node, nodes.Import | nodes.FromImport | nodes.Include | nodes.Extends):
            self._add(
                TemplateIssueKind.TEMPLATE_LOADING,
                Severity.HIGH,
                f"{type(node).__name__.lower()} statement loads another template",
                type(node).__name__,
                node,
            )
        elif isinstance(node, nodes.Const | nodes.Concat | nodes.Add | nodes.Mul | nodes.Filter):
            self._string(node)

    def _read(self, obj: nodes.Node, key: str, node: nodes.Node) -> None:
        """A read of ``obj.key`` / ``obj['key']`` with a literal key."""
        if key in self.bindings.fields and not key.startswith("_"):
            return  # a field of a namespace the template made ({% set ns.system = ... %})
        if self._attribute(key, node):
            return
        if isinstance(obj, nodes.Name) and obj.name in vocab.CALLABLE_GLOBALS:
            self._add(
                TemplateIssueKind.GLOBAL_MISUSE,
                Severity.HIGH,
                f"reads {key!r} of the global function {obj.name!r}; templates only call it",
                f"{obj.name}.{key}",
                node,
            )
            return
        if (
            key in vocab.FIELD_NAMES
            or key in self.bindings.fields
            or id(node) in (self.bindings.callees)
        ):
            return  # calls are judged in _call
        root = _root(obj)
        if isinstance(root, nodes.Name) and not self._known(root.name):
            self._add(
                TemplateIssueKind.UNVETTED_READ,
                Severity.MEDIUM,
                f"reads {key!r} of {root.name!r}, an object the renderer provides that chat "
                "templates do not use",
                f"{root.name}...{key}",
                node,
            )

    def _known(self, name: str) -> bool:
        return name in vocab.CONTEXT_NAMES or self.bindings.bound(name)

    def _subscript(self, node: nodes.Getitem) -> None:
        if isinstance(node.arg, nodes.Slice):
            return
        key = _fold(node.arg)
        if key is not None:
            self._read(node.node, key, node)
            return
        if isinstance(node.arg, nodes.Const):
            return  # an integer, float, bool or None index
        if isinstance(node.node, nodes.Name) and node.node.name in vocab.CALLABLE_GLOBALS:
            self._read(node.node, "[...]", node)
        elif self.bindings.built_string(node.arg):
            self._add(
                TemplateIssueKind.DYNAMIC_ATTRIBUTE,
                Severity.HIGH,
                "subscript with a key built from strings at render time; Jinja's getitem falls "
                "back to getattr, so this names attributes (CVE-2024-34359 obfuscation)",
                "getitem",
                node,
            )
        elif id(node) in self.bindings.used and not self.bindings.numeric(node.arg):
            self._add(
                TemplateIssueKind.COMPUTED_KEY,
                Severity.MEDIUM,
                "subscript with a key computed at render time that is not a number, whose "
                "result is used further; Jinja's getitem falls back to getattr, so a key from "
                "the data can name attributes",
                "getitem",
                node,
            )

    def _call(self, node: nodes.Call) -> None:
        callee = node.node
        if isinstance(callee, nodes.Name):
            name = callee.name
            if name in vocab.CALLABLE_GLOBALS or name in self.bindings.macros:
                return
            if name in {"caller", "loop"} or name in GADGET_GLOBALS:
                return  # caller/loop(...) are Jinja's own; gadgets are reported by name
            self._add(
                TemplateIssueKind.UNVETTED_CALL,
                Severity.MEDIUM,
                f"calls {name!r}, which is neither a macro of the template nor a function "
                "chat-template renderers provide",
                name,
                node,
            )
            return
        method = callee.attr if isinstance(callee, nodes.Getattr) else None
        if isinstance(callee, nodes.Getitem):
            method = _fold(callee.arg)
        if method is not None:
            if method in vocab.METHOD_NAMES or method.startswith("_"):
                return  # underscore names are already reported as attribute access
            self._add(
                TemplateIssueKind.UNVETTED_CALL,
                Severity.HIGH,
                f"calls method {method!r}, outside the str/dict/list methods chat templates "
                "use (str.format reads attributes; others reach code)",
                method,
                node,
            )
            return
        self._add(
            TemplateIssueKind.UNVETTED_CALL,
            Severity.HIGH,
            "calls a value computed at render time (the result of a subscript, filter or call)",
            type(callee).__name__,
            node,
        )

    def _attribute(self, attr: str, node: nodes.Node) -> bool:
        """Report underscore and process-primitive names; True when one was reported."""
        if attr in DANGEROUS_DUNDERS:
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
        elif attr in DANGEROUS_NAMES:
            self._add(
                TemplateIssueKind.DANGEROUS_NAME,
                Severity.HIGH,
                f"access to attribute {attr!r}, a process, import or eval primitive",
                attr,
                node,
            )
        else:
            return False
        return True

    def _filter(self, node: nodes.Filter | nodes.Test) -> None:
        if not isinstance(node, nodes.Filter):
            return
        args = list(node.args)
        if node.name in {"map", "select", "reject"} and args:
            # map('attr', '__class__') applies a filter named by a string to every item.
            name = _fold(args[0])
            if name is None:
                self._dynamic(node, f"{node.name} with a filter or test named at render time")
                return
            if name == "attr":
                self._attribute_argument(node, args[1] if len(args) > 1 else None)
        position = vocab.ATTRIBUTE_FILTERS.get(node.name, -1)
        if position == -1:
            return
        for kw in node.kwargs:
            if kw.key == "attribute":
                self._attribute_argument(node, kw.value)
        if position is not None and len(args) > position:
            self._attribute_argument(node, args[position])
        elif node.name == "attr":
            self._dynamic(node, "attr filter without an attribute name")

    def _attribute_argument(self, node: nodes.Filter, arg: nodes.Node | None) -> None:
        """An attribute-name argument of a filter: a dotted path looked up with getattr."""
        name = _fold(arg) if arg is not None else None
        if name is None:
            self._dynamic(node, f"{node.name} filter with a computed attribute name")
            return
        for part in name.split("."):
            if not self._attribute(part, node) and node.name == "attr" and node.node:
                self._read(node.node, part, node)

    def _dynamic(self, node: nodes.Node, message: str) -> None:
        self._add(TemplateIssueKind.DYNAMIC_ATTRIBUTE, Severity.HIGH, message, "filter", node)

    def _name(self, node: nodes.Name) -> None:
        if node.name in GADGET_GLOBALS and not self.bindings.bound(node.name):
            self._add(
                TemplateIssueKind.GADGET_GLOBAL,
                Severity.MEDIUM,
                f"use of {node.name!r}, a global that exposes __globals__ in default Jinja2",
                node.name,
                node,
            )
        elif (node.name.startswith("_") or node.name in DANGEROUS_NAMES) and not (
            # A variable the template binds itself ({% set _args = ... %}) holds its own data;
            # only names the renderer would have to provide (__builtins__) are suspicious.
            self.bindings.bound(node.name) and node.name not in DANGEROUS_DUNDERS
        ):
            self._add(
                TemplateIssueKind.DANGEROUS_NAME,
                Severity.HIGH,
                f"use of variable {node.name!r}",
                node.name,
                node,
            )
        elif (
            node.name in vocab.CALLABLE_GLOBALS
            and node.ctx == "load"
            and id(node) not in self.bindings.callees
            and not self.bindings.bound(node.name)
        ):
            self._add(
                TemplateIssueKind.GLOBAL_MISUSE,
                Severity.HIGH,
                f"the global function {node.name!r} used as a value, not called",
                node.name,
                node,
            )

    def _string(self, node: nodes.Node) -> None:
        # Dunder names hidden in strings reach attributes through str.format ("{0.__class__}")
        # or through a computed subscript; the constant folding above covers simple builds.
        text = _fold(node)
        if text is None or "__" not in text:
            return
        hits = sorted(d for d in DANGEROUS_DUNDERS if d in text)
        if hits:
            self._add(
                TemplateIssueKind.DUNDER_ACCESS,
                Severity.CRITICAL,
                f"string constant names {', '.join(hits)}",
                text[:80],
                node,
            )


def _iter_nodes(tree: nodes.Node) -> Iterator[nodes.Node]:
    """Every node of the tree, iteratively (deep templates must not exhaust the stack)."""
    stack: list[nodes.Node] = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(node.iter_child_nodes())
