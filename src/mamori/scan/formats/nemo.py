"""NVIDIA NeMo ``.nemo`` archives: a tar (often gzip'd) of ``model_config.yaml`` and weights.

``ModelPT.restore_from`` extracts the tar, reads ``model_config.yaml`` with OmegaConf and
builds the model with Hydra's ``instantiate``, which imports and calls every ``_target_``
string in the config (with ``_args_`` as positional arguments, ``_partial_`` to defer the
call). A ``_target_`` of ``os.system`` or ``builtins.exec`` therefore runs when the model is
restored. The YAML is parsed here with ``yaml.compose`` (a node graph of plain scalars: no
object is constructed, line numbers are kept) and every target is checked against an
allowlist. The checkpoints and pickles inside are scanned by content through the engine.
A gzip'd ``.nemo`` is handled by the gzip handler, whose child tar lands here.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, ClassVar, Final

from mamori.findings import FileFormat, Location
from mamori.scan._internal.source import Source
from mamori.scan._internal.tarread import MemberKind, iter_tar_members
from mamori.scan._internal.zipstream import scan_child_guarded
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext
from mamori.scan.formats.tar import looks_like_tar
from mamori.scan.rules import rule

if TYPE_CHECKING:
    import yaml

__all__ = ["ALLOWED_TARGETS", "DANGEROUS_TARGETS", "NemoHandler", "classify_target"]

CONFIG_NAME: Final = "model_config.yaml"
_SNIFF_NAMES: Final = frozenset({CONFIG_NAME, "model_weights.ckpt"})
MAX_CONFIG_BYTES: Final = 16 << 20
"""NeMo configs are kilobytes; anything near this is not a config."""
_TARGET_KEYS: Final = frozenset({"_target_"})
# Hydra 0.x spelling, still accepted by NeMo's legacy restore path: {cls: ..., params: {...}}.
_LEGACY_TARGET_KEYS: Final = frozenset({"cls", "target"})
_MAX_NODES: Final = 1_000_000

# Callable prefixes NeMo model configs legitimately instantiate.
ALLOWED_TARGETS: Final[dict[str, str]] = {
    "nemo.collections.": "NeMo models, modules, datasets, losses, metrics and tokenizers",
    "nemo.core.classes.": "NeMo base classes and neural types",
    "nemo.core.optim.": "NeMo optimizers and LR schedulers",
    "nemo.core.config.": "NeMo structured config dataclasses",
    "nemo.core.neural_types.": "NeMo neural type descriptors",
    "torch.nn.": "PyTorch layers, activations and losses",
    "torch.optim.": "PyTorch optimizers and LR schedulers",
    "torch.utils.data.": "PyTorch samplers and data loaders",
    "lightning.pytorch.callbacks.": "Lightning trainer callbacks",
    "lightning.pytorch.loggers.": "Lightning experiment loggers",
    "lightning.pytorch.strategies.": "Lightning distribution strategies",
    "lightning.pytorch.plugins.": "Lightning precision and environment plugins",
    "pytorch_lightning.callbacks.": "Lightning (old package name) callbacks",
    "pytorch_lightning.loggers.": "Lightning (old package name) loggers",
    "pytorch_lightning.strategies.": "Lightning (old package name) strategies",
    "pytorch_lightning.plugins.": "Lightning (old package name) plugins",
    "megatron.core.models.": "Megatron Core model definitions used by NeMo LLMs",
    "megatron.core.transformer.": "Megatron Core transformer layer specs",
    "megatron.core.optimizer.": "Megatron Core optimizer configs",
    "omegaconf.DictConfig": "OmegaConf container type",
    "omegaconf.ListConfig": "OmegaConf container type",
}

# Targets that run commands, import code or resolve further names. Prefix match; a prefix
# without a trailing dot is an exact callable (or that callable's attributes).
DANGEROUS_TARGETS: Final[dict[str, str]] = {
    "os.": "process execution and file system",
    "posix.": "os under another name",
    "nt.": "os under another name (Windows)",
    "subprocess.": "process execution",
    "builtins.": "exec, eval, open, __import__",
    "__builtin__.": "Python 2 builtins",
    "sys.": "interpreter state",
    "importlib.": "imports arbitrary modules",
    "runpy.": "runs modules and scripts",
    "pty.": "spawns shells",
    "shutil.": "file system",
    "socket.": "network",
    "urllib.": "network",
    "requests.": "network",
    "ctypes.": "native code",
    "pickle.": "unpickling runs code",
    "dill.": "unpickling runs code",
    "marshal.": "loads bytecode",
    "code.": "interactive interpreter",
    "pydoc.": "pydoc.locate resolves any name",
    "webbrowser.": "launches programs",
    "multiprocessing.": "process execution",
    "asyncio.": "process execution",
    "functools.": "partial/reduce wrap any callable",
    "operator.": "attrgetter/methodcaller reach any attribute",
    "types.": "builds functions and code objects",
    "hydra.utils.": "get_method/get_class/call/instantiate resolve other names",
    "hydra._internal.": "Hydra's name resolver",
    "omegaconf.OmegaConf": "load/save read and write files; resolvers run code",
    "nemo.utils.model_utils.import_class_by_path": "imports a class named by a string",
    "torch.load": "unpickles a file",
    "torch.hub.": "downloads and runs code",
    "torch.jit.load": "loads TorchScript from a path",
    "torch.package.": "imports packaged code",
    "numpy.load": "may unpickle a file",
}
_BARE_BUILTINS: Final = frozenset(
    {"exec", "eval", "compile", "open", "__import__", "getattr", "setattr", "input",
     "breakpoint", "globals", "locals", "vars", "delattr", "memoryview", "print"}
)  # fmt: skip


def classify_target(target: str) -> tuple[str, str] | None:
    """Return ``(rule id, reason)`` for a Hydra target, or ``None`` when it is allowlisted."""
    name = target.strip()
    for prefix, why in DANGEROUS_TARGETS.items():
        if name.startswith(prefix) or name == prefix.rstrip("."):
            return "MAM-NEMO-001", why
    if name in _BARE_BUILTINS or name.startswith("__"):
        return "MAM-NEMO-001", "Python builtin"
    for prefix in ALLOWED_TARGETS:
        if name.startswith(prefix) or name == prefix.rstrip("."):
            return None
    return "MAM-NEMO-002", "not on the NeMo/torch/Lightning allowlist"


def nemo_names_in_head(head: bytes) -> list[str]:
    """Member names of the tar headers that lie inside ``head`` (for sniffing only)."""
    names: list[str] = []
    pos = 0
    long_name: str | None = None
    while pos + 512 <= len(head):
        block = head[pos : pos + 512]
        if not block.strip(b"\0"):
            break
        try:
            size = int(block[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
        except ValueError:
            break
        kind = block[156:157]
        body = pos + 512
        if kind == b"L":
            long_name = head[body : body + size].split(b"\0", 1)[0].decode("utf-8", "replace")
        elif kind not in {b"x", b"g"}:
            name = block[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
            prefix = block[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
            names.append(long_name or (f"{prefix}/{name}" if prefix else name))
            long_name = None
        pos = body + (size + 511) // 512 * 512
    return names


class NemoHandler(FormatHandler):
    """A tar holding ``model_config.yaml`` or ``model_weights.ckpt``: a NeMo model."""

    format: ClassVar[FileFormat] = FileFormat.NEMO
    refines: ClassVar[FileFormat | None] = FileFormat.TAR
    needs_random_access: ClassVar[bool] = True

    def sniff(self, probe: Probe) -> bool:
        """A valid tar whose first members (in the probe) include a NeMo file name."""
        if not looks_like_tar(probe.head):
            return False
        return any(posixpath.basename(n) in _SNIFF_NAMES for n in nemo_names_in_head(probe.head))

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Check every Hydra target in the config, then scan every member by content."""
        configs = 0
        for member in iter_tar_members(source, ctx):
            if member.kind is not MemberKind.FILE or member.source is None:
                continue
            if posixpath.basename(member.name) == CONFIG_NAME:
                configs += 1
                _check_config(member.name, member.source, ctx)
            scan_child_guarded(ctx, member.name, member.source)
        if configs == 0:
            ctx.report("MAM-NEMO-003", f"NeMo archive has no {CONFIG_NAME}")


def _check_config(name: str, source: Source, ctx: ScanContext) -> None:
    location = Location((*ctx.member_path, name))

    def report(rule_id: str, message: str, evidence: str | None = None) -> None:
        ctx.emit(rule(rule_id).finding(message, location=location, evidence=evidence))

    if (source.size or 0) > MAX_CONFIG_BYTES:
        report("MAM-NEMO-003", f"{name} is larger than {MAX_CONFIG_BYTES} bytes; not parsed")
        return
    with source.open() as stream:
        data = stream.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        report("MAM-NEMO-003", f"{name} is larger than {MAX_CONFIG_BYTES} bytes; not parsed")
        return
    import yaml  # noqa: PLC0415 -- lazy: only a NeMo config needs PyYAML (start-up time)

    try:
        # compose builds only nodes (tags, scalars, line marks); nothing is constructed.
        documents = list(yaml.compose_all(data, Loader=yaml.SafeLoader))
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError, ValueError) as exc:
        report("MAM-NEMO-003", f"{name} is not valid YAML: {type(exc).__name__}: {exc}")
        return
    for issue in _targets(documents):
        report(*issue)


def _mapping_targets(node: yaml.MappingNode) -> list[tuple[str, str, str]]:
    """Targets of one mapping: ``_target_``, or Hydra 0.x ``cls``/``target`` beside ``params``."""
    import yaml  # noqa: PLC0415 -- lazy (start-up time); already loaded by _check_config

    keys = {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
    legacy = "params" in keys
    issues: list[tuple[str, str, str]] = []
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode) or not isinstance(value, yaml.ScalarNode):
            continue
        if key.value in _TARGET_KEYS or (legacy and key.value in _LEGACY_TARGET_KEYS):
            verdict = classify_target(str(value.value))
            if verdict is not None:
                rule_id, why = verdict
                issues.append(
                    (
                        rule_id,
                        (
                            f"line {value.start_mark.line + 1}: {key.value} {value.value!r} "
                            f"({why}); Hydra imports and calls it on restore"
                        ),
                        str(value.value),
                    )
                )
    return issues


def _targets(documents: list[yaml.Node]) -> list[tuple[str, str, str]]:
    import yaml  # noqa: PLC0415 -- lazy (start-up time); already loaded by _check_config

    issues: list[tuple[str, str, str]] = []
    stack: list[yaml.Node] = list(documents)
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue  # YAML aliases share nodes; each is checked once (no billion laughs)
        seen.add(id(node))
        if len(seen) > _MAX_NODES:
            issues.append(("MAM-NEMO-003", f"config holds more than {_MAX_NODES} nodes", ""))
            break
        line = node.start_mark.line + 1
        if node.tag.startswith("tag:yaml.org,2002:python/") or node.tag.startswith("!!python"):
            issues.append(
                (
                    "MAM-NEMO-001",
                    (
                        f"line {line}: Python YAML tag {node.tag} (constructs objects under "
                        "yaml.unsafe_load; OmegaConf refuses it)"
                    ),
                    node.tag,
                )
            )
        if isinstance(node, yaml.MappingNode):
            issues.extend(_mapping_targets(node))
            for key, value in node.value:
                stack.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return issues
