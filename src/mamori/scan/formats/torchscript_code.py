"""Static checks of the ``code/`` files in a TorchScript archive, with ``ast`` only.

``torch.jit.save`` stores each scripted class as Python-syntax TorchScript source under
``<prefix>/code/__torch__/...py``; ``torch.jit.load`` compiles that source again and runs it
whenever the model is called. The TorchScript language has no imports, no ``eval`` and no
access to Python modules, but it does have operators that touch the file system
(``aten::from_file`` maps any file, ``aten::save`` writes one) and it can call custom operators
and classes that only a loaded native library provides. A file that names Python escape hatches
was not produced by the TorchScript printer: it was edited.

Nothing here compiles or executes the code; it is parsed with :func:`ast.parse` and walked.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

__all__ = ["BUILTIN_CLASS_NAMESPACES", "CodeIssue", "check_torchscript_code"]

# Operators (after normalising ``torch.X`` / ``torch.ops.aten.X`` / ``ops.aten.X`` to ``ns::X``)
# that open files by name. Found by grepping torch 2.13's ``_jit_get_all_schemas()`` for
# str filename/path arguments.
_FILE_OPS: Final[dict[str, str]] = {
    "aten::from_file": "maps or reads an arbitrary file (shared=True writes back to it)",
    "aten::save": "writes a tensor to an arbitrary file path",
    "debugprims::load_tensor": "reads a tensor from a file by name",
}

# Operator namespaces built into libtorch (torch 2.13 ``_jit_get_all_schemas``). Anything else
# under ``ops.`` is a custom operator from a native extension that must be loaded first.
_BUILTIN_OP_NAMESPACES: Final = frozenset(
    {
        "aten",  # the tensor library
        "prim",  # TorchScript interpreter primitives
        "prims",  # primitive decompositions
        "quantized",  # quantized kernels shipped in libtorch
        "_quantized",  # internal quantized kernels
        "quantization",  # quantization helpers
        "mkldnn",  # oneDNN kernels
        "mkldnn_prepacked",  # prepacked oneDNN weights
        "mkl",  # MKL kernels
        "onednn",  # oneDNN fusion ops
        "sparse",  # sparse kernels
        "inductor",  # inductor runtime helpers
        "inductor_prims",  # inductor primitives
        "rngprims",  # RNG primitives
        "profiler",  # record_function markers
        "static_runtime",  # static runtime fused ops
        "onnx",  # ONNX export placeholders
        "export",  # torch.export helpers
        "_native",  # native helpers
        "_dtensor",  # DTensor helpers
        "c10d",  # collectives; need a process group object that a model file cannot carry
        "_c10d_functional",  # functional collectives, as above
        "_c10d_functional_autograd",  # as above
        "symm_mem",  # symmetric memory collectives, as above
    }
)

# Custom-class namespaces registered by libtorch itself (torch.classes.<ns>.<Class>).
BUILTIN_CLASS_NAMESPACES: Final = frozenset(
    {
        "quantized",  # packed weights of quantized Linear/Conv modules
        "xnnpack",  # prepacked mobile weights
        "profiler",  # _RecordFunction handles
        "onednn",  # oneDNN packed weights
        "sparse",  # sparse packed params
    }
)

# Names the TorchScript printer never emits; their presence means hand-edited source.
_ESCAPE_NAMES: Final[dict[str, str]] = {
    "os": "operating system access",
    "posix": "operating system access",
    "nt": "operating system access",
    "subprocess": "process execution",
    "pty": "process execution",
    "sys": "interpreter internals",
    "builtins": "Python builtins module",
    "__builtins__": "Python builtins module",
    "__import__": "dynamic import",
    "importlib": "dynamic import",
    "eval": "code evaluation",
    "exec": "code execution",
    "compile": "code compilation",
    "open": "file access",
    "getattr": "reflective attribute access",
    "setattr": "reflective attribute access",
    "delattr": "reflective attribute access",
    "globals": "interpreter internals",
    "locals": "interpreter internals",
    "vars": "interpreter internals",
    "pickle": "deserialisation",
    "marshal": "deserialisation",
    "ctypes": "native code",
    "socket": "network access",
    "shutil": "file access",
    "runpy": "code execution",
    "breakpoint": "debugger hook",
}
_ESCAPE_ATTRIBUTES: Final[dict[str, str]] = {
    "_C": "torch._C internals",
    "load_library": "torch.ops.load_library loads a native library",
    "__class__": "object-graph walking",
    "__subclasses__": "object-graph walking",
    "__globals__": "object-graph walking",
    "__dict__": "object-graph walking",
    "__code__": "object-graph walking",
    "__mro__": "object-graph walking",
    "__bases__": "object-graph walking",
    "__getattribute__": "reflective attribute access",
    "__reduce__": "pickle hooks",
    "__reduce_ex__": "pickle hooks",
}


@dataclass(frozen=True, slots=True)
class CodeIssue:
    """One problem in a TorchScript source file, tagged with the rule that reports it."""

    rule_id: str
    line: int
    message: str
    evidence: str


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _operator(dotted: str) -> str | None:
    """``torch.save`` -> ``aten::save``; ``ops.ns.op[.overload]`` -> ``ns::op``."""
    parts = dotted.split(".")
    if parts[0] == "torch" and len(parts) > 1 and parts[1] == "ops":
        parts = parts[1:]
    if parts[0] == "ops" and len(parts) >= 3:  # noqa: PLR2004 - ops.<namespace>.<op>
        return f"{parts[1]}::{parts[2]}"
    if parts[0] == "torch" and len(parts) == 2:  # noqa: PLR2004 - torch.<op>
        return f"aten::{parts[1]}"
    return None


def _custom_class(dotted: str) -> str | None:
    marker = "torch.classes."
    at = dotted.find(marker)
    if at < 0:
        return None
    rest = dotted[at + len(marker) :].split(".")
    if rest and rest[0] and rest[0] not in BUILTIN_CLASS_NAMESPACES:
        return ".".join(rest[:2])
    return None


def _issues_for_dotted(dotted: str, line: int) -> Iterator[CodeIssue]:
    op = _operator(dotted)
    if op is not None:
        if op in _FILE_OPS:
            yield CodeIssue("MAM-TORCH-020", line, f"{dotted}: {_FILE_OPS[op]}", dotted)
        elif op.split("::", 1)[0] not in _BUILTIN_OP_NAMESPACES:
            yield CodeIssue("MAM-TORCH-021", line, f"custom operator {op}", dotted)
    custom = _custom_class(dotted)
    if custom is not None:
        yield CodeIssue("MAM-TORCH-021", line, f"custom class torch.classes.{custom}", dotted)


# --- getattr on submodules -------------------------------------------------------------------
# The TorchScript printer spells a submodule whose name is not an identifier (every child of
# nn.Sequential / nn.ModuleList: "0", "1", ...) as ``getattr(self, "0")`` or, after hoisting
# ``heads = self.heads``, as ``getattr(heads, "1")`` (torch/csrc/jit/serialization/
# python_print.cpp, printAttributeValue). That form is allowed when it provably reads a
# submodule: two positional arguments, a constant non-dunder name, and an object that is the
# method's ``self`` or a local bound only to such reads. Everything else about ``getattr`` (a
# computed name, a dunder, a default, an object that is a module, a builtin or a parameter)
# stays MAM-TORCH-022.
_Scope = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef


def _constant_member(node: ast.expr) -> bool:
    """A string constant naming an ordinary attribute (not a dunder, not an escape hatch)."""
    if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
        return False
    name = node.value
    dunder = name.startswith("__") and name.endswith("__")
    return bool(name) and not dunder and name not in _ESCAPE_ATTRIBUTES


def _getattr_parts(node: ast.AST) -> ast.expr | None:
    """The object of ``getattr(obj, "name")`` in the printer's shape, else None."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "getattr"
        and len(node.args) == 2  # noqa: PLR2004 - getattr(obj, name); a default is not printed
        and not node.keywords
        and not any(isinstance(a, ast.Starred) for a in node.args)
        and _constant_member(node.args[1])
    ):
        return node.args[0]
    return None


def _reads_submodule(node: ast.expr, safe: set[str]) -> bool:
    """``self``-rooted: a safe local, ``<safe>.attr`` or ``getattr(<safe>, "const")``."""
    if isinstance(node, ast.Name):
        return node.id in safe
    if isinstance(node, ast.Attribute):
        dunder = node.attr.startswith("__") and node.attr.endswith("__")
        return (
            not dunder
            and node.attr not in _ESCAPE_ATTRIBUTES
            and _reads_submodule(node.value, safe)
        )
    target = _getattr_parts(node)
    return target is not None and _reads_submodule(target, safe)


def _own_nodes(scope: _Scope) -> Iterator[ast.AST]:
    """Nodes of ``scope``'s body, not descending into nested functions, lambdas or classes."""
    stack: list[ast.AST] = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _Scope):
            stack.extend(ast.iter_child_nodes(node))


def _bindings(
    func: ast.FunctionDef | ast.AsyncFunctionDef,
) -> tuple[dict[str, list[ast.expr]], set[str]]:
    """Plain ``name = value`` bindings in ``func``'s body, and every name bound any other way."""
    values: dict[str, list[ast.expr]] = {}
    tainted: set[str] = set()
    simple: set[int] = set()
    for node in _own_nodes(func):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    values.setdefault(target.id, []).append(node.value)
                    simple.add(id(target))
        elif isinstance(node, ast.Global | ast.Nonlocal):
            tainted.update(node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            tainted.add(node.name)
    # Any other binding (for, with, unpacking, +=, :=, del) is not followed.
    tainted.update(
        node.id
        for node in _own_nodes(func)
        if isinstance(node, ast.Name)
        and not isinstance(node.ctx, ast.Load)
        and id(node) not in simple
    )
    return values, tainted


def _safe_locals(func: ast.FunctionDef | ast.AsyncFunctionDef, *, is_method: bool) -> set[str]:
    """Names in ``func`` that can only hold ``self`` or one of its submodules."""
    params = [*func.args.posonlyargs, *func.args.args]
    if not is_method or not params:
        return set()
    self_name = params[0].arg
    values, tainted = _bindings(func)
    if self_name in values or self_name in tainted:
        return set()  # ``self`` rebound: nothing is known about it
    # The other parameters hold whatever the caller passes.
    tainted.update(a.arg for a in ast.walk(func.args) if isinstance(a, ast.arg))
    tainted.discard(self_name)
    safe = {self_name}
    changed = True
    while changed:  # least fixpoint: a = b; b = a leaves both unsafe
        changed = False
        for name, bound in values.items():
            if name in safe or name in tainted:
                continue
            if all(_reads_submodule(v, safe) for v in bound):
                safe.add(name)
                changed = True
    return safe


def _submodule_getattrs(tree: ast.Module) -> set[int]:
    """Ids of the ``getattr`` Name nodes of calls that provably read a submodule."""
    allowed: set[int] = set()
    methods = {
        id(item)
        for cls in ast.walk(tree)
        if isinstance(cls, ast.ClassDef)
        for item in cls.body
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        safe = _safe_locals(func, is_method=id(func) in methods)
        if not safe:
            continue
        for node in _own_nodes(func):
            target = _getattr_parts(node)
            if target is not None and _reads_submodule(target, safe):
                assert isinstance(node, ast.Call)  # _getattr_parts matched a call
                allowed.add(id(node.func))
    return allowed


def check_torchscript_code(source: bytes) -> list[CodeIssue]:
    """Return the issues in one TorchScript source file; never executes it.

    An unparseable file yields a single ``MAM-TORCH-023`` issue.
    """
    try:
        text = source.decode("utf-8")
        tree = ast.parse(text, mode="exec")
    except (UnicodeDecodeError, SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        return [
            CodeIssue("MAM-TORCH-023", 0, f"cannot parse: {type(exc).__name__}", str(exc)[:200])
        ]
    issues: list[CodeIssue] = []
    seen_chains: set[int] = set()
    submodule_getattrs = _submodule_getattrs(tree)
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            module = node.module if isinstance(node, ast.ImportFrom) else None
            shown = f"from {module} import {', '.join(names)}" if module else ", ".join(names)
            issues.append(CodeIssue("MAM-TORCH-022", line, f"import statement: {shown}", shown))
        elif (
            isinstance(node, ast.Name)
            and node.id in _ESCAPE_NAMES
            and id(node) not in submodule_getattrs
        ):
            issues.append(
                CodeIssue("MAM-TORCH-022", line, f"{node.id}: {_ESCAPE_NAMES[node.id]}", node.id)
            )
        elif isinstance(node, ast.Attribute):
            if node.attr in _ESCAPE_ATTRIBUTES:
                issues.append(
                    CodeIssue(
                        "MAM-TORCH-022",
                        line,
                        f".{node.attr}: {_ESCAPE_ATTRIBUTES[node.attr]}",
                        node.attr,
                    )
                )
            if id(node) in seen_chains:
                continue
            # Only the outermost attribute of a chain is classified; mark the inner ones.
            inner = node.value
            while isinstance(inner, ast.Attribute):
                seen_chains.add(id(inner))
                inner = inner.value
            dotted = _dotted(node)
            if dotted is not None:
                issues.extend(_issues_for_dotted(dotted, line))
    return issues
