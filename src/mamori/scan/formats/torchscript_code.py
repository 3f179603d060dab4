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
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            module = node.module if isinstance(node, ast.ImportFrom) else None
            shown = f"from {module} import {', '.join(names)}" if module else ", ".join(names)
            issues.append(CodeIssue("MAM-TORCH-022", line, f"import statement: {shown}", shown))
        elif isinstance(node, ast.Name) and node.id in _ESCAPE_NAMES:
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
