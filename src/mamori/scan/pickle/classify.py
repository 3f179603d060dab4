"""Turn "global G was used as U" into a verdict: allowed, denied, or unknown with a severity.

Order of precedence (first match wins):

1. the policy's ``denied_globals``                       -> CRITICAL (MAM-PKL-001)
2. a conditional callable used only as checked            -> safe (``allowlist.CONDITIONAL``)
3. an exact built-in denylist entry                      -> CRITICAL (MAM-PKL-001)
4. BUILD or item opcodes on the imported object itself   -> HIGH (MAM-PKL-009)
5. the policy's ``allowed_globals``, the exact allowlist -> safe (canonical name only)
6. a wildcard denylist entry, on any spelling or suffix  -> CRITICAL (MAM-PKL-001)
7. a dotted qualname that walks to a dangerous attribute -> CRITICAL (MAM-PKL-001)
8. unknown: severity by use (see :func:`classify`)

Unknown globals are graded by the strongest thing any opcode path can do with them (the
model in ``MODEL.md``): called by REDUCE/OBJ/INST or by a helper that calls its argument
(HIGH in the standard library, the gadget surface; MEDIUM elsewhere); reachable as a callable
through an implicit call site (HIGH); passed to reviewed code (MEDIUM); a class instantiated
and given state (MEDIUM in the standard library; LOW elsewhere: the user's own model class
in a full-module torch save, whose code the user installed). Only a global that no opcode can
reach is LOW as "imported but not called".
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from mamori.findings import Severity
from mamori.scan.pickle.allowlist import CONDITIONAL, is_allowlisted
from mamori.scan.pickle.denylist import DANGEROUS_ATTRS, DENYLIST, MODULE_ALIASES
from mamori.scan.pickle.uses import UseKind
from mamori.scan.pickle.values import GlobalRef

__all__ = ["Verdict", "classify", "is_loader", "is_stdlib", "spellings"]

_MAX_NAME: Final = 1024
_MAX_DOTS: Final = 32
_PY2_NAMES: Final = {"__builtin__", "copy_reg", "cPickle", "commands", "urllib2", "thread"}
_EXACT_DENY: Final = frozenset(k for k in DENYLIST if not k.endswith("*"))
_WILD_DENY: Final = tuple(k[:-1] for k in DENYLIST if k.endswith("*"))
_LOADERS: Final = frozenset(
    {
        "pickle.loads",
        "pickle.load",
        "pickle._loads",
        "dill.loads",
        "dill._dill.loads",
        "cloudpickle.loads",
        "joblib.load",
        "torch.load",
        "torch.serialization.load",
        "torch.storage._load_from_bytes",
        "numpy.load",
        "pandas.read_pickle",
        "pickle.Unpickler",
        "marshal.loads",
    }
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """How to report one global: ``rule_id`` None means allowed (no finding)."""

    rule_id: str | None
    severity: Severity
    reason: str


_SAFE: Final = Verdict(None, Severity.INFO, "allowed")


def is_stdlib(module: str) -> bool:
    """True when ``module`` is part of the standard library (Python 3 or 2 spelling)."""
    top = module.split(".", 1)[0]
    return top in sys.stdlib_module_names or top in _PY2_NAMES or top in MODULE_ALIASES


def spellings(ref: GlobalRef) -> Iterator[str]:
    """Every dotted spelling the loader could resolve ``ref`` to, for deny matching.

    The name as written, with the module alias-normalised (``posix`` -> ``os``), lower-cased
    (case-insensitive file systems), and each suffix of a dotted qualname (protocol 4
    attribute walking: ``argparse`` + ``_os.system``).
    """
    module, name = ref.module, ref.name
    yield f"{module}.{name}"
    top, dot, rest = module.partition(".")
    alias = MODULE_ALIASES.get(top)
    if alias is not None:
        yield f"{alias}{dot}{rest}.{name}"
    lowered = f"{module}.{name}".lower()
    if lowered != f"{module}.{name}":
        yield lowered
    parts = name.split(".")
    for i in range(len(parts) - 1):
        first = MODULE_ALIASES.get(parts[i], parts[i])
        yield ".".join([first, *parts[i + 1 :]])


def _deny_reason(candidates: list[str], *, exact_only: bool) -> str | None:
    for dotted in candidates:
        if dotted in _EXACT_DENY:
            return DENYLIST[dotted]
        if exact_only:
            continue
        for prefix in _WILD_DENY:
            if dotted.startswith(prefix) or dotted == prefix.rstrip("."):
                return DENYLIST[prefix + "*"]
    return None


def _policy_match(dotted: str, patterns: frozenset[str]) -> bool:
    if dotted in patterns:
        return True
    return any(p.endswith("*") and dotted.startswith(p[:-1]) for p in patterns)


def is_loader(ref: GlobalRef) -> bool:
    """True when calling ``ref`` with bytes deserialises them (``pickle.loads``)."""
    if len(ref.module) + len(ref.name) > _CACHED_NAME:
        return _is_loader(ref)
    return _is_loader_cached(ref)


def _is_loader(ref: GlobalRef) -> bool:
    return any(s in _LOADERS for s in spellings(ref))


# The interpreter asks once per call opcode, with the same few globals (a torch state dict
# has one _rebuild_tensor_v2 REDUCE per tensor); short names only, so the cache stays small.
_CACHED_NAME: Final = 256
_is_loader_cached: Final = functools.lru_cache(maxsize=1024)(_is_loader)


_LITERAL_LOAD_ONLY: Final = frozenset({UseKind.REFERENCED, UseKind.LOADS_LITERAL})
_RESOLVED_ONLY: Final = frozenset({UseKind.REFERENCED, UseKind.RESOLVED})


def classify(  # noqa: PLR0911 - one return per precedence step, in documented order
    ref: GlobalRef,
    kinds: set[UseKind],
    *,
    allowed: frozenset[str] = frozenset(),
    denied: frozenset[str] = frozenset(),
) -> Verdict:
    """Decide how to report ``ref``, given every way the pickle used it."""
    if len(ref.module) + len(ref.name) > _MAX_NAME or ref.name.count(".") > _MAX_DOTS:
        # No real module path looks like this; and walking every suffix would be quadratic.
        return Verdict("MAM-PKL-007", Severity.HIGH, "implausibly long or deep global name")
    candidates = list(dict.fromkeys(spellings(ref)))
    dotted = ref.dotted
    if any(_policy_match(c, denied) for c in candidates):
        return Verdict("MAM-PKL-001", Severity.CRITICAL, "denied by the scan policy")
    if UseKind.LOADS_LITERAL in kinds and kinds <= _LITERAL_LOAD_ONLY:
        # Only ever called on literal bytes, which were scanned as a file of their own.
        return _SAFE
    if UseKind.RESOLVED in kinds and kinds <= _RESOLVED_ONLY and dotted in CONDITIONAL:
        # Every call had the arguments CONDITIONAL describes (checked at the call).
        return _SAFE
    reason = _deny_reason(candidates, exact_only=True)
    if reason is not None:
        return Verdict("MAM-PKL-001", Severity.CRITICAL, reason)
    if UseKind.MUTATED in kinds:
        return Verdict(
            "MAM-PKL-009",
            Severity.HIGH,
            "BUILD or APPENDS/SETITEMS/ADDITEMS act on the imported object itself",
        )
    if dotted in allowed or is_allowlisted(dotted):
        return _SAFE
    reason = _deny_reason(candidates, exact_only=False)
    if reason is not None:
        return Verdict("MAM-PKL-001", Severity.CRITICAL, reason)
    if "." in ref.name and any(p in DANGEROUS_ATTRS for p in ref.name.split(".")[1:]):
        return Verdict(
            "MAM-PKL-001",
            Severity.CRITICAL,
            "dotted name walks to a dangerous attribute through another object",
        )
    return _unknown(ref, kinds)


def _unknown(ref: GlobalRef, kinds: set[UseKind]) -> Verdict:  # noqa: PLR0911 - one per use
    stdlib = is_stdlib(ref.module)
    if UseKind.CALLED in kinds and stdlib:
        return Verdict(
            "MAM-PKL-002",
            Severity.HIGH,
            "standard-library callable outside the allowlist is called at load time "
            "(gadget surface)",
        )
    if UseKind.REACHABLE in kinds:
        return Verdict(
            "MAM-PKL-019",
            Severity.HIGH,
            "global outside the allowlist is reachable as a callable through an implicit "
            "call (a helper's argument, a planted method, an object's own methods)",
        )
    if UseKind.CALLED in kinds:
        return Verdict(
            "MAM-PKL-003",
            Severity.MEDIUM,
            "third-party callable outside the allowlist is called at load time",
        )
    if UseKind.ARGUMENT in kinds:
        return Verdict(
            "MAM-PKL-019",
            Severity.MEDIUM,
            "global outside the allowlist is passed to code that may call its methods",
        )
    if kinds & {UseKind.INSTANTIATED, UseKind.BUILT}:
        if stdlib:
            return Verdict(
                "MAM-PKL-005",
                Severity.MEDIUM,
                "standard-library class outside the allowlist is instantiated and given state",
            )
        return Verdict(
            "MAM-PKL-004",
            Severity.LOW,
            "class outside the allowlist is instantiated; loading needs its code installed",
        )
    return Verdict(
        "MAM-PKL-006", Severity.LOW, "global outside the allowlist is imported but not called"
    )
