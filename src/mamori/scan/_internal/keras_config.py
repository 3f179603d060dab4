"""The Keras configuration walker shared by ``.keras``, Keras HDF5 and ``keras_metadata.pb``.

Every Keras format stores the model architecture as JSON: ``config.json`` in a ``.keras`` zip,
the ``model_config`` attribute of an HDF5 file, the ``metadata`` strings of a SavedModel's
``keras_metadata.pb``. Loading rebuilds Python objects from it: each dict with a
``class_name`` names a class or function by ``module``/``class_name``/``registered_name``, and
``Lambda`` layers carry marshalled bytecode. This module parses the JSON strictly and walks the
whole tree (layers, nested models, initializers, regularizers, constraints, activations, losses,
optimizers, metrics) without importing anything it names.

What is flagged mirrors what Keras' ``safe_mode`` refuses in ``keras/src/saving/
serialization_lib.py`` (``__lambda__``, ``NON_MODELING_APIS``, modules outside the Keras
packages) *and* the bypasses of older releases, because the file may be loaded by any version:

* CVE-2024-3660: Lambda layers run marshalled bytecode (Keras < 2.13 had no safe_mode at all).
* CVE-2025-9905: ``.h5`` loading ignored ``safe_mode``, so HDF5 Lambda layers always run.
* CVE-2025-1550: ``config.json`` ``module`` was imported as given (Keras < 3.9).
* CVE-2025-8747 / CVE-2025-9906: any ``keras.*`` function (``keras.utils.get_file``,
  ``keras.config.enable_unsafe_deserialization``) could be called from a config.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from mamori.findings import Location, Severity
from mamori.scan._internal.context import ScanContext
from mamori.scan.rules import rule

__all__ = [
    "KerasConfigError",
    "KerasIssue",
    "check_keras_config",
    "load_json_strict",
    "report_keras_config",
    "report_keras_json",
]

MAX_CONFIG_BYTES: Final = 32 << 20
"""Largest Keras JSON document parsed; architecture configs are kilobytes to a few megabytes,
and the parsed objects take several times the document's size in memory."""
_MAX_NODES: Final = 2_000_000
_MAX_EVIDENCE_NAMES: Final = 16
_MAX_LAMBDA_BYTES: Final = 16 << 20
_MIN_CODE_CHARS: Final = 16  # shorter base64 cannot hold a marshalled code object

# Top-level packages whose classes Keras itself resolves (serialization_lib._retrieve_class_or_fn
# imports only these). Anything else is a custom object the loader must get from user code.
KERAS_PACKAGES: Final[dict[str, str]] = {
    "keras": "Keras itself; resolved through its public API table",
    "keras_hub": "KerasHub model zoo; Keras imports it directly",
    "keras_nlp": "KerasNLP (predecessor of KerasHub); Keras imports it directly",
    "keras_cv": "KerasCV; Keras imports it directly",
    "tf_keras": "Keras 2 packaged separately; same built-in classes",
    "tensorflow": "tensorflow.keras and tf.* built-ins saved by Keras 2",
}

# Modules whose callables run commands, load code, touch files or the network. A config naming
# one is an exploit, not a custom layer (module roots, matched on the first dotted component).
DANGEROUS_MODULES: Final[dict[str, str]] = {
    "os": "process execution and file system",
    "posix": "os under another name",
    "nt": "os under another name (Windows)",
    "subprocess": "process execution",
    "sys": "interpreter state, module table",
    "builtins": "exec, eval, open, __import__",
    "__builtin__": "Python 2 name of builtins",
    "importlib": "imports arbitrary code",
    "runpy": "runs modules and scripts",
    "pty": "spawns shells",
    "shutil": "file system",
    "socket": "network",
    "urllib": "network",
    "requests": "network",
    "http": "network",
    "ctypes": "native code",
    "pickle": "unpickling runs code",
    "marshal": "loads bytecode",
    "code": "interactive interpreter",
    "codeop": "compiles code",
    "pydoc": "pydoc.locate imports by name",
    "webbrowser": "launches programs",
    "multiprocessing": "process execution",
    "asyncio": "process execution (create_subprocess_*)",
    "tempfile": "file system",
    "pathlib": "file system",
    "io": "file system (io.open)",
    "functools": "partial() wraps any callable",
    "operator": "attrgetter/methodcaller reach any attribute",
    "types": "builds functions and code objects",
}

# Public Keras functions that safe_mode refuses (serialization_lib.NON_MODELING_APIS, Keras
# 3.11+) and their private homes, which Keras 3.0-3.10 resolved (CVE-2025-8747 used
# keras.utils.get_file to download into a chosen path; CVE-2025-9906 re-enabled unsafe mode).
NON_MODELING_FUNCTIONS: Final[dict[str, str]] = {
    "get_file": "downloads a URL to a chosen path",
    "enable_unsafe_deserialization": "turns safe_mode off for the rest of the load",
    "load_model": "loads another model (recursion into an unscanned artifact)",
    "model_from_json": "deserializes another config",
    "save_model": "writes files",
    "load_weights": "reads files",
    "save_weights": "writes files",
    "deserialize_keras_object": "deserializes an attacker-chosen config",
    "serialize_keras_object": "not a modeling function",
    "register_keras_serializable": "mutates the global object registry",
    "clear_session": "resets global state",
    "image_dataset_from_directory": "reads a directory",
    "text_dataset_from_directory": "reads a directory",
    "audio_dataset_from_directory": "reads a directory",
    "load_img": "reads a file",
    "save_img": "writes a file",
    "func_load": "unmarshals bytecode",
}

_LAMBDA_CLASSES: Final = frozenset({"Lambda", "__lambda__"})
_EXTERNAL_LOADERS: Final[dict[str, str]] = {
    "TFSMLayer": "loads a TensorFlow SavedModel from 'filepath' when the layer is built",
}
_PRINTABLE_NAME: Final = re.compile(rb"[A-Za-z_][A-Za-z0-9_.]{2,63}")
_CODE_HINT: Final = re.compile(r"\blambda\b|\bdef\s|\bimport\b|__\w+__|\beval\(|\bexec\(")
_BUILTIN_NAMES: Final = frozenset(n for n in dir(builtins) if not n.startswith("_")) | {
    "__import__",
    "__loader__",
    "__build_class__",
}


class KerasConfigError(ValueError):
    """The JSON is not a document Keras would accept; the message says why."""


@dataclass(frozen=True, slots=True)
class KerasIssue:
    """One problem in a Keras config: a rule id, where in the JSON, and what was seen."""

    rule_id: str
    message: str
    path: str
    evidence: str | None = None
    severity: Severity | None = None


def load_json_strict(data: bytes, *, max_bytes: int = MAX_CONFIG_BYTES) -> object:
    """Parse a Keras JSON document, refusing what loaders would read differently.

    Duplicate keys are refused (Python keeps the last, other readers the first), as are
    documents above ``max_bytes``, non-UTF-8 bytes and nesting deep enough to exhaust the
    parser's recursion.

    Raises:
        KerasConfigError: the document is refused; the message names the reason.
    """
    if len(data) > max_bytes:
        msg = f"config is {len(data)} bytes, above the {max_bytes}-byte limit"
        raise KerasConfigError(msg)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"config is not UTF-8: {exc}"
        raise KerasConfigError(msg) from exc

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, value in pairs:
            if key in out:
                msg = f"duplicate key {key!r}"
                raise KerasConfigError(msg)
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except KerasConfigError:
        raise
    except RecursionError as exc:
        msg = "config nests too deeply to parse"
        raise KerasConfigError(msg) from exc
    except ValueError as exc:
        msg = f"config is not valid JSON: {exc}"
        raise KerasConfigError(msg) from exc


def check_keras_config(config: object, *, ignores_safe_mode: bool = False) -> list[KerasIssue]:
    """Walk a parsed Keras config and return every dangerous or custom reference in it.

    ``ignores_safe_mode`` marks configs whose loader runs Lambda code even when the caller asks
    for ``safe_mode``: HDF5 files (CVE-2025-9905) and Keras 2 SavedModel metadata.

    Raises:
        KerasConfigError: the config holds more values than the walker visits.
    """
    issues: list[KerasIssue] = []
    for path, node in _walk(config):
        if isinstance(node, dict) and isinstance(node.get("class_name"), str):
            _check_object(node, _render(path), issues, ignores_safe_mode=ignores_safe_mode)
    return issues


# A JSON path as a linked list ``(parent, key)``: O(1) memory per step, rendered on demand.
_Path = tuple[object, str | int] | None
_DONE: Final = object()


def _children(node: object) -> Iterator[tuple[str | int, object]]:
    if isinstance(node, dict):
        return iter(node.items())
    if isinstance(node, list):
        return enumerate(node)
    return iter(())


def _walk(root: object) -> Iterator[tuple[_Path, object]]:
    """Depth-first walk with a stack of iterators: memory grows with depth, not with width."""
    yield None, root
    stack: list[tuple[_Path, Iterator[tuple[str | int, object]]]] = [(None, _children(root))]
    seen = 1
    while stack:
        parent, children = stack[-1]
        item = next(children, _DONE)
        if item is _DONE:
            stack.pop()
            continue
        assert isinstance(item, tuple)
        key, value = item
        seen += 1
        if seen > _MAX_NODES:
            msg = f"config holds more than {_MAX_NODES} values"
            raise KerasConfigError(msg)
        path: _Path = (parent, key)
        yield path, value
        if isinstance(value, dict | list):
            stack.append((path, _children(value)))


def _render(path: _Path) -> str:
    parts: list[str] = []
    while path is not None:
        parent, key = path
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
        path = parent  # type: ignore[assignment]  # the linked list's parent is a _Path
    return "$" + "".join(reversed(parts))


def _check_object(
    node: dict[str, object], path: str, issues: list[KerasIssue], *, ignores_safe_mode: bool
) -> None:
    class_name = node.get("class_name")
    if not isinstance(class_name, str):
        return
    module = node.get("module")
    registered = node.get("registered_name")
    inner = node.get("config")
    where = f"{path} ({class_name})"

    if class_name in _LAMBDA_CLASSES:
        _check_lambda(class_name, inner, where, issues, ignores_safe_mode=ignores_safe_mode)
    if class_name in _EXTERNAL_LOADERS:
        target = inner.get("filepath") if isinstance(inner, dict) else None
        issues.append(
            KerasIssue(
                "MAM-KERAS-004",
                f"{class_name} at {where} {_EXTERNAL_LOADERS[class_name]}; safe_mode refuses it",
                path,
                evidence=str(target) if target is not None else class_name,
            )
        )

    # The name Keras resolves: a function's name is its ``config`` string, a class's name is
    # ``class_name``; ``registered_name`` is consulted first for custom objects.
    names = {class_name}
    if class_name == "function" and isinstance(inner, str):
        names.add(inner)
    if isinstance(registered, str):
        names.add(registered.rsplit(">", 1)[-1])
    names.discard("function")

    if isinstance(module, str) and module:
        _check_module(module, names, where, path, issues)
    elif module is None or module == "":
        # Keras 2 / legacy H5 configs carry no module: Keras looks the name up in its own
        # tables. Only names that are Python builtins or non-modeling APIs are dangerous.
        issues.extend(
            _non_modeling(name, name, where, path)
            for name in sorted(names)
            if name in NON_MODELING_FUNCTIONS
        )


def _check_module(
    module: str, names: set[str], where: str, path: str, issues: list[KerasIssue]
) -> None:
    root = module.split(".", 1)[0]
    evidence = ", ".join(f"{module}.{n}" for n in sorted(names)) or module
    if root in KERAS_PACKAGES:
        issues.extend(
            _non_modeling(name, f"{module}.{name}", where, path)
            for name in sorted(names)
            if name in NON_MODELING_FUNCTIONS
        )
        return
    if root == "builtins" and names <= _KERAS_BUILTIN_FUNCTION_NAMES:
        # Keras saves its own activation/loss functions as module "builtins" and resolves the
        # name in keras.{activations,losses,...} only (serialization_lib.BUILTIN_MODULES).
        return
    dangerous = names & _BUILTIN_NAMES if root == "builtins" else root in DANGEROUS_MODULES
    if dangerous:
        issues.append(
            KerasIssue(
                "MAM-KERAS-002",
                f"{where} references {evidence} ({DANGEROUS_MODULES.get(root, 'builtin')}); "
                "older Keras imports the module on load (CVE-2025-1550)",
                path,
                evidence=evidence,
            )
        )
        return
    issues.append(
        KerasIssue(
            "MAM-KERAS-003",
            f"{where} is a custom object from module {module!r}; loading needs that code, and "
            "Keras < 3.9 imports the module itself (CVE-2025-1550)",
            path,
            evidence=evidence,
        )
    )


def _non_modeling(name: str, qualified: str, where: str, path: str) -> KerasIssue:
    return KerasIssue(
        "MAM-KERAS-002",
        f"{where} calls the non-modeling Keras API {qualified} "
        f"({NON_MODELING_FUNCTIONS[name]}); safe_mode bypass CVE-2025-8747/CVE-2025-9906",
        path,
        evidence=qualified,
    )


def _check_lambda(
    class_name: str,
    inner: object,
    where: str,
    issues: list[KerasIssue],
    *,
    ignores_safe_mode: bool,
) -> None:
    """Flag Lambda code: Keras 3 ``__lambda__`` dicts, Keras 2 ``[b64, defaults, closure]``.

    Keras 3 nests ``{"class_name": "__lambda__", ...}`` under ``function``/``output_shape``;
    the walk reaches those dicts itself, so a ``Lambda`` layer only handles the Keras 2
    spellings (``function_type``/``output_shape_type`` of ``"lambda"`` or ``"function"``).
    """
    if class_name == "__lambda__":
        _report_code(inner, where, issues, ignores_safe_mode=ignores_safe_mode)
        return
    if not isinstance(inner, dict):
        return
    for key in ("function", "output_shape"):
        value = inner.get(key)
        kind = inner.get(f"{key}_type" if key != "function" else "function_type")
        if isinstance(value, dict):
            continue  # a nested object (or __lambda__) dict: checked when the walk gets there
        looks_like_code = isinstance(value, str) and bool(_CODE_HINT.search(value))
        if kind in {"lambda", "raw"} or (
            kind is None and (looks_like_code or isinstance(value, list))
        ):
            _report_code(value, f"{where}.{key}", issues, ignores_safe_mode=ignores_safe_mode)
        elif kind == "function" or (kind is None and isinstance(value, str)):
            _named_function(inner.get("module"), value, f"{where}.{key}", issues)


def _named_function(module: object, function: object, where: str, issues: list[KerasIssue]) -> None:
    """Keras 2 Lambda naming a function: it is looked up in ``sys.modules[module]``."""
    if not isinstance(function, str) or not isinstance(module, str):
        return
    root = module.split(".", 1)[0]
    if root in KERAS_PACKAGES:
        return
    rule_id = "MAM-KERAS-002" if root in DANGEROUS_MODULES else "MAM-KERAS-003"
    issues.append(
        KerasIssue(
            rule_id,
            f"Lambda layer at {where} calls {module}.{function}",
            where,
            evidence=f"{module}.{function}",
        )
    )


def _report_code(
    function: object, where: str, issues: list[KerasIssue], *, ignores_safe_mode: bool
) -> None:
    code_bytes = 0
    names: list[str] = []
    for blob in _strings(function):
        raw = _b64(blob)
        if raw is not None:
            code_bytes += len(raw)
            names.extend(_names_in(raw))
        elif _CODE_HINT.search(blob):
            code_bytes += len(blob)
            names.append(f"source: {blob[:120]!r}")
    if code_bytes == 0:
        return
    why = (
        "this format's loader ignores safe_mode (CVE-2025-9905)"
        if ignores_safe_mode
        else "it runs when loaded with safe_mode=False (CVE-2024-3660)"
    )
    shown = ", ".join(dict.fromkeys(names))
    issues.append(
        KerasIssue(
            "MAM-KERAS-001",
            f"Lambda layer at {where} embeds {code_bytes} bytes of Python code; {why}",
            where,
            evidence=f"names in code: {shown}" if shown else f"{code_bytes} bytes of bytecode",
        )
    )


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def _b64(text: str) -> bytes | None:
    r"""Decode Keras' base64 of marshal data (``func_dump`` swaps ``\\`` for ``/`` on Windows)."""
    if len(text) < _MIN_CODE_CHARS or len(text) > _MAX_LAMBDA_BYTES:
        return None
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        try:
            return base64.decodebytes(text.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return None


def _names_in(raw: bytes) -> list[str]:
    """Printable identifiers in marshalled code, found by a regex: never ``marshal.loads``."""
    found = [m.group().decode("ascii") for m in _PRINTABLE_NAME.finditer(raw)]
    return list(dict.fromkeys(found))[:_MAX_EVIDENCE_NAMES]


# Keras functions saved with module "builtins" (activations, losses, metrics by short name).
# They are resolved inside Keras only, so a name from this set is safe under that module.
_KERAS_BUILTIN_FUNCTION_NAMES: Final = frozenset(
    {
        "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "mish",
        "softmax", "log_softmax", "softplus", "softsign", "sigmoid", "hard_sigmoid",
        "hard_silu", "hard_swish", "tanh", "tanh_shrink", "exponential", "linear",
        "celu", "glu", "hard_tanh", "hard_shrink", "soft_shrink", "sparse_plus",
        "sparse_sigmoid", "squareplus", "threshold", "sparsemax", "log_sigmoid",
        "mse", "mae", "mape", "msle", "mean_squared_error", "mean_absolute_error",
        "mean_absolute_percentage_error", "mean_squared_logarithmic_error",
        "binary_crossentropy", "categorical_crossentropy",
        "sparse_categorical_crossentropy", "binary_focal_crossentropy",
        "categorical_focal_crossentropy", "hinge", "squared_hinge", "categorical_hinge",
        "kl_divergence", "kld", "kullback_leibler_divergence", "poisson", "log_cosh",
        "logcosh", "huber", "cosine_similarity", "ctc", "dice", "tversky",
        "accuracy", "acc", "binary_accuracy", "categorical_accuracy",
        "sparse_categorical_accuracy", "top_k_categorical_accuracy",
        "sparse_top_k_categorical_accuracy",
    }
)  # fmt: skip


def report_keras_json(
    data: bytes,
    ctx: ScanContext,
    *,
    member: tuple[str, ...] = (),
    ignores_safe_mode: bool = False,
    what: str = "Keras config",
) -> object | None:
    """Parse one Keras JSON document and emit a finding per issue; return the parsed value.

    ``member`` extends the current location (the config's name inside a container). A
    document that cannot be parsed is a ``MAM-KERAS-005`` finding and returns ``None``.
    """
    location = Location((*ctx.member_path, *member))
    try:
        config = load_json_strict(data)
    except KerasConfigError as exc:
        ctx.emit(rule("MAM-KERAS-005").finding(f"{what} refused: {exc}", location=location))
        return None
    report_keras_config(config, ctx, member=member, ignores_safe_mode=ignores_safe_mode, what=what)
    return config


def report_keras_config(
    config: object,
    ctx: ScanContext,
    *,
    member: tuple[str, ...] = (),
    ignores_safe_mode: bool = False,
    what: str = "Keras config",
) -> None:
    """Walk an already parsed Keras config and emit a finding per issue.

    Used for JSON that is a Keras architecture by content wherever it sits (a model folder's
    ``config.json``, a ``.keras`` zip holding only ``config.json``): ``keras.saving.load_model``
    rebuilds ``{"class_name": ..., "config": ...}`` objects at any depth of such a document.
    """
    location = Location((*ctx.member_path, *member))
    try:
        issues = check_keras_config(config, ignores_safe_mode=ignores_safe_mode)
    except KerasConfigError as exc:
        ctx.emit(rule("MAM-KERAS-005").finding(f"{what} refused: {exc}", location=location))
        return
    for issue in issues:
        ctx.emit(
            rule(issue.rule_id).finding(
                issue.message, location=location, evidence=issue.evidence, severity=issue.severity
            )
        )
